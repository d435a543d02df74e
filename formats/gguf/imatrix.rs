//! llama.cpp's importance-matrix files (`llama-imatrix` output), read and
//! normalized as `llama-quantize` does (tools/quantize/quantize.cpp
//! `load_imatrix`): the GGUF form (`NAME.in_sum2` and `NAME.counts` tensors,
//! sums divided by the count of each expert slice, 1 where a slice was never
//! seen) and the legacy binary form (sums divided by the call count).

use std::collections::BTreeMap;
use std::path::Path;

use super::container::{self, GgufFile};
use crate::ir::error::{Error, Result};
use crate::ir::weights::map_file;

/// Per-tensor importance (mean squared activation per input column, one
/// slice per expert), keyed by GGUF tensor name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Vec<f32>>,
}

impl Imatrix {
    pub fn read(path: &Path) -> Result<Imatrix> {
        let map = map_file(path)?;
        let imatrix = if map.starts_with(b"GGUF") {
            from_gguf(path, &container::read(path)?)?
        } else {
            legacy(path, &map)?
        };
        if imatrix.entries.is_empty() {
            return Err(Error::Input(format!(
                "{}: the importance matrix has no entries",
                path.display()
            )));
        }
        for (name, values) in &imatrix.entries {
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(Error::Input(format!(
                    "{}: importance of '{name}' holds {bad} (llama.cpp refuses non-finite values)",
                    path.display()
                )));
            }
        }
        Ok(imatrix)
    }

    /// The importance for a tensor whose rows have `ne0` elements and `experts`
    /// slices; `None` when the file has no entry for it.
    pub fn for_tensor(&self, name: &str, ne0: u64, experts: u64) -> Result<Option<&[f32]>> {
        let Some(values) = self.entries.get(name) else {
            return Ok(None);
        };
        if values.len() as u64 != ne0.saturating_mul(experts) {
            return Err(Error::Input(format!(
                "importance matrix: '{name}' has {} values, the tensor needs {}",
                values.len(),
                ne0.saturating_mul(experts)
            )));
        }
        Ok(Some(values))
    }
}

struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(Error::parse(
                self.path,
                self.pos as u64,
                format!(
                    "{what}: needs {n} bytes, {} left",
                    self.data.len() - self.pos
                ),
            ));
        };
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count that must be positive and whose `unit`-byte items fit in the file.
    fn count(&mut self, what: &str, unit: usize) -> Result<usize> {
        let at = self.pos as u64;
        let n = self.i32(what)?;
        let left = self.data.len() - self.pos;
        if n < 1 || (n as usize).saturating_mul(unit) > left {
            return Err(Error::parse(
                self.path,
                at,
                format!("{what} {n} does not fit the {left} bytes left"),
            ));
        }
        Ok(n as usize)
    }
}

fn legacy(path: &Path, data: &[u8]) -> Result<Imatrix> {
    let mut c = Cursor { path, data, pos: 0 };
    // Each entry takes at least 16 bytes (name length, name, ncall, nval, one value).
    let n_entries = c.count("entry count", 16)?;
    let mut imatrix = Imatrix::default();
    for _ in 0..n_entries {
        let len = c.count("name length", 1)?;
        let at = c.pos as u64;
        let name = std::str::from_utf8(c.bytes(len, "name")?)
            .map_err(|_| Error::parse(path, at, "entry name is not UTF-8"))?
            .trim_end_matches('\0')
            .to_string();
        let ncall = c.i32("call count")?;
        let nval = c.count("value count", 4)?;
        let raw = c.bytes(nval * 4, "values")?;
        let values = raw
            .chunks_exact(4)
            .map(|b| {
                let sum = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if ncall > 0 { sum / ncall as f32 } else { sum }
            })
            .collect();
        imatrix.entries.insert(name, values);
    }
    Ok(imatrix)
}

fn from_gguf(path: &Path, file: &GgufFile) -> Result<Imatrix> {
    let mut sums: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for tensor in &file.tensors {
        let (table, name) = if let Some(n) = tensor.name.strip_suffix(".in_sum2") {
            (&mut sums, n)
        } else if let Some(n) = tensor.name.strip_suffix(".counts") {
            (&mut counts, n)
        } else {
            continue;
        };
        table.insert(name, file.f32_values(tensor)?);
    }
    let mut imatrix = Imatrix::default();
    for (name, sum) in sums {
        let count = counts.get(name).ok_or_else(|| {
            Error::Input(format!(
                "{}: '{name}.in_sum2' has no '{name}.counts'",
                path.display()
            ))
        })?;
        if count.is_empty() || sum.len() % count.len() != 0 {
            return Err(Error::Input(format!(
                "{}: '{name}': {} sums do not split into {} expert slices",
                path.display(),
                sum.len(),
                count.len()
            )));
        }
        let ne0 = sum.len() / count.len();
        let values = sum
            .chunks(ne0)
            .zip(count)
            .flat_map(|(slice, &n)| {
                slice
                    .iter()
                    .map(move |&s| if n > 0.0 { s / n } else { 1.0 })
            })
            .collect();
        imatrix.entries.insert(name.to_string(), values);
    }
    Ok(imatrix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_file(entries: &[(&str, i32, &[f32])]) -> Vec<u8> {
        let mut out = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, values) in entries {
            out.extend((name.len() as i32).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(ncall.to_le_bytes());
            out.extend((values.len() as i32).to_le_bytes());
            for v in *values {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn legacy_sums_are_divided_by_the_call_count() {
        let data = legacy_file(&[("blk.0.ffn_up.weight", 4, &[4.0, 8.0]), ("x", 0, &[3.0])]);
        let m = legacy(Path::new("m.dat"), &data).unwrap();
        assert_eq!(m.entries["blk.0.ffn_up.weight"], [1.0, 2.0]);
        assert_eq!(m.entries["x"], [3.0]);
        assert_eq!(m.for_tensor("x", 1, 1).unwrap(), Some(&[3.0][..]));
        assert!(m.for_tensor("x", 2, 1).is_err());
        assert_eq!(m.for_tensor("y", 2, 1).unwrap(), None);
    }

    #[test]
    fn gguf_sums_are_divided_by_each_expert_slices_count_and_unseen_slices_are_one() {
        use crate::formats::gguf::container::{TensorSpec, write};
        use crate::formats::gguf::types::TensorType;
        use crate::progress::Silent;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.imatrix");
        let sums = [2.0f32, 4.0, 6.0, 8.0, 5.0, 5.0, 5.0, 5.0];
        let counts = [2.0f32, 0.0];
        let payloads: [Vec<u8>; 2] = [
            sums.iter().flat_map(|v| v.to_le_bytes()).collect(),
            counts.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ];
        let spec = |name: &str, ne: Vec<u64>| TensorSpec {
            name: name.into(),
            bytes: 4 * ne.iter().product::<u64>(),
            ne,
            ty: TensorType::F32.id(),
        };
        let specs = [
            spec("blk.0.ffn_down.weight.in_sum2", vec![4, 2]),
            spec("blk.0.ffn_down.weight.counts", vec![2]),
        ];
        let produce = |i: usize, sink: &mut dyn std::io::Write| -> Result<()> {
            sink.write_all(&payloads[i])
                .map_err(|e| Error::io("sink", e))
        };
        write(&path, &[], &specs, &produce, &Silent).unwrap();
        let m = Imatrix::read(&path).unwrap();
        assert_eq!(
            m.entries["blk.0.ffn_down.weight"],
            [1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(
            m.for_tensor("blk.0.ffn_down.weight", 4, 2)
                .unwrap()
                .map(<[f32]>::len),
            Some(8)
        );
    }

    #[test]
    fn hostile_legacy_counts_are_located_errors() {
        let good = legacy_file(&[("a", 1, &[1.0, 2.0])]);
        for cut in 0..good.len() {
            let err = legacy(Path::new("m.dat"), &good[..cut]).unwrap_err();
            assert!(matches!(err, Error::Parse { .. }), "cut {cut}: {err}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&i32::MAX.to_le_bytes());
        let err = legacy(Path::new("m.dat"), &huge).unwrap_err().to_string();
        assert!(
            err.contains("at byte 0") && err.contains("entry count"),
            "{err}"
        );
        let mut negative = good;
        negative[4..8].copy_from_slice(&(-5i32).to_le_bytes());
        let err = legacy(Path::new("m.dat"), &negative)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at byte 4"), "{err}");
    }
}
