//! The lazy weight store.
//!
//! Weight bytes are [`Bytes`] views: a slice of a memory-mapped source file
//! (nothing is read until a pass or writer touches the pages) or an owned
//! buffer for weights a pass computed. Converting a model therefore needs
//! little heap beyond the tensors being worked on.

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use super::dtype::DType;
use super::error::{Error, Result};
use super::graph::WeightId;

/// What a weight is for in a model without a graph (LLM checkpoints), so writers
/// can name and quantize it. Layer-indexed roles carry the block index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightRole {
    TokenEmbedding,
    PositionEmbedding,
    TokenTypeEmbedding,
    EmbeddingNorm,
    EmbeddingNormBias,
    AttnNorm(u32),
    AttnNormBias(u32),
    AttnQ(u32),
    AttnK(u32),
    AttnV(u32),
    AttnQBias(u32),
    AttnKBias(u32),
    AttnVBias(u32),
    AttnOutput(u32),
    AttnOutputBias(u32),
    AttnQNorm(u32),
    AttnKNorm(u32),
    AttnOutputNorm(u32),
    AttnOutputNormBias(u32),
    FfnNorm(u32),
    FfnGate(u32),
    FfnUp(u32),
    FfnUpBias(u32),
    FfnDown(u32),
    FfnDownBias(u32),
    LayerOutputNorm(u32),
    LayerOutputNormBias(u32),
    OutputNorm,
    OutputNormBias,
    Output,
    Pooler,
    PoolerBias,
}

impl WeightRole {
    /// The transformer block this weight belongs to, if any.
    pub fn layer(self) -> Option<u32> {
        use WeightRole::*;
        match self {
            AttnNorm(l)
            | AttnNormBias(l)
            | AttnQ(l)
            | AttnK(l)
            | AttnV(l)
            | AttnQBias(l)
            | AttnKBias(l)
            | AttnVBias(l)
            | AttnOutput(l)
            | AttnOutputBias(l)
            | AttnQNorm(l)
            | AttnKNorm(l)
            | AttnOutputNorm(l)
            | AttnOutputNormBias(l)
            | FfnNorm(l)
            | FfnGate(l)
            | FfnUp(l)
            | FfnUpBias(l)
            | FfnDown(l)
            | FfnDownBias(l)
            | LayerOutputNorm(l)
            | LayerOutputNormBias(l) => Some(l),
            _ => None,
        }
    }
}

/// One constant tensor.
#[derive(Clone)]
pub struct Weight {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Raw little-endian bytes in `dtype`'s layout.
    pub data: Bytes,
    pub role: Option<WeightRole>,
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weight")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .field("role", &self.role)
            .finish()
    }
}

impl Weight {
    /// A weight over `data`, checked: the byte length must equal what the dtype
    /// and shape need (overflow-checked).
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
        data: Bytes,
    ) -> Result<Weight> {
        let name = name.into();
        let expected = expected_bytes(dtype, &shape).ok_or_else(|| {
            Error::Input(format!(
                "weight '{name}': shape {shape:?} of {dtype} has no valid byte size"
            ))
        })?;
        if dtype != DType::String && data.len() as u64 != expected {
            return Err(Error::Input(format!(
                "weight '{name}': {} bytes for shape {shape:?} of {dtype}, expected {expected}",
                data.len()
            )));
        }
        Ok(Weight {
            name,
            dtype,
            shape,
            data,
            role: None,
        })
    }

    pub fn element_count(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Bytes a tensor of this dtype and shape takes, or `None` on overflow.
/// Block types count along the last (row) dim; strings have no fixed size (0).
pub fn expected_bytes(dtype: DType, shape: &[usize]) -> Option<u64> {
    if dtype == DType::String {
        return Some(0);
    }
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))?;
    dtype.bytes_for(count)
}

/// All constant tensors of a graph, addressed by [`WeightId`].
#[derive(Clone, Debug, Default)]
pub struct WeightStore {
    weights: Vec<Weight>,
}

impl WeightStore {
    pub fn add(&mut self, w: Weight) -> WeightId {
        self.weights.push(w);
        WeightId((self.weights.len() - 1) as u32)
    }

    pub fn get(&self, id: WeightId) -> &Weight {
        &self.weights[id.0 as usize]
    }

    pub fn get_mut(&mut self, id: WeightId) -> &mut Weight {
        &mut self.weights[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (WeightId, &Weight)> {
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| (WeightId(i as u32), w))
    }

    pub fn total_bytes(&self) -> u64 {
        self.weights.iter().map(|w| w.data.len() as u64).sum()
    }
}

/// Memory-maps a whole file as shared bytes; slices of it are zero-copy weight data.
pub fn map_file(path: &Path) -> Result<Bytes> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the map is read-only. A file truncated by another process while
    // mapped would fault; edgeconv reads model files it was pointed at and
    // documents that they must not change during a conversion.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let map = Arc::new(map);
    let mut live = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|m| m.strong_count() > 0);
    live.push(Arc::downgrade(&map));
    Ok(Bytes::from_owner(SharedMap(map)))
}

/// Every live file map, so [`release_mapped_pages`] can tell a slice of a
/// file map from any other memory.
static MAPS: Mutex<Vec<Weak<memmap2::Mmap>>> = Mutex::new(Vec::new());

struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Drops the resident pages under `data` when it lies in a file map made by
/// [`map_file`] (whole pages only); otherwise does nothing. The bytes stay
/// readable: the next access reads them from the file again. Writers that
/// stream a large model call it after each tensor, so the pages they have
/// read do not add up to the model's size in resident memory.
pub fn release_mapped_pages(data: &[u8]) {
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    let start = data.as_ptr() as usize;
    let Some(map) = maps.iter().filter_map(Weak::upgrade).find(|m| {
        let base = m.as_ptr() as usize;
        start >= base && start + data.len() <= base + m.len()
    }) else {
        return;
    };
    let page = page_size();
    let offset = start - map.as_ptr() as usize;
    let first = offset.div_ceil(page) * page;
    let end = (offset + data.len()) / page * page;
    if end > first {
        // SAFETY: `map` is a read-only map of a file (map_file), so
        // MADV_DONTNEED discards no data: later reads fault the pages back
        // in from the file.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first)
        };
    }
}

fn page_size() -> usize {
    // A multiple of every page size in use (4, 16 and 64 KiB), so whole
    // units of it are whole pages everywhere.
    64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_of_a_file_map_read_back_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let map = map_file(&path).unwrap();
        assert_eq!(&map[..], &bytes[..]);
        release_mapped_pages(&map[1000..900_000]);
        release_mapped_pages(&map);
        assert_eq!(&map[..], &bytes[..]);
        // Memory that is not a file map is left alone.
        let heap = bytes.clone();
        release_mapped_pages(&heap);
        assert_eq!(heap, bytes);
    }

    #[test]
    fn weight_size_is_checked() {
        let ok = Weight::new("w", DType::F32, vec![2, 3], Bytes::from(vec![0u8; 24]));
        assert!(ok.is_ok());
        let short = Weight::new("w", DType::F32, vec![2, 3], Bytes::from(vec![0u8; 20]));
        assert!(short.unwrap_err().to_string().contains("expected 24"));
        let huge = Weight::new("w", DType::F32, vec![usize::MAX, 4], Bytes::new());
        assert!(huge.is_err());
    }
}
