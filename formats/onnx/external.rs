//! Tensor data stored outside the model file (`data_location: EXTERNAL`).
//!
//! Locations are resolved relative to the model's folder and must stay inside
//! it: absolute paths, `..` components and symlinks that lead out are refused.
//! Each file is memory-mapped once; tensors are zero-copy slices of it.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::ir::error::Result;
use crate::ir::weights::map_file;

use super::proto::StringStringEntryProto;
use super::tensor::tensor_error;

/// The external data files of one model, mapped on first use.
pub struct ExternalFiles {
    model: PathBuf,
    base_dir: Option<PathBuf>,
    mapped: HashMap<PathBuf, Bytes>,
}

impl ExternalFiles {
    /// External data of the model at `model`, looked up in `base_dir`
    /// (`None`: the model has no folder, so external data is refused).
    pub fn new(model: &Path, base_dir: Option<&Path>) -> ExternalFiles {
        ExternalFiles {
            model: model.to_path_buf(),
            base_dir: base_dir.map(Path::to_path_buf),
            mapped: HashMap::new(),
        }
    }

    /// The `expected` bytes of tensor `tensor` described by its
    /// `external_data` entries (`location`, `offset`, `length`).
    pub fn load(
        &mut self,
        tensor: &str,
        entries: &[StringStringEntryProto],
        expected: u64,
    ) -> Result<Bytes> {
        let fail = |msg: String| tensor_error(&self.model, tensor, msg);
        let entry = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let location =
            entry("location").ok_or_else(|| fail("external data without a location".into()))?;
        let number = |key: &str| -> Result<Option<u64>> {
            entry(key)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| fail(format!("external data {key} '{v}' is not a byte count")))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?;
        let file = self
            .resolve(location)
            .map_err(|msg| fail(format!("external data location '{location}': {msg}")))?;
        let data = match self.mapped.get(&file) {
            Some(d) => d.clone(),
            None => {
                let d = map_file(&file)?;
                self.mapped.insert(file.clone(), d.clone());
                d
            }
        };
        let size = data.len() as u64;
        let length = length.unwrap_or_else(|| size.saturating_sub(offset));
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                fail(format!(
                    "external data {}: bytes {offset}+{length} exceed the file's {size} bytes",
                    file.display()
                ))
            })?;
        if length != expected {
            return Err(fail(format!(
                "external data holds {length} bytes, the dtype and shape need {expected}"
            )));
        }
        Ok(data.slice(offset as usize..end as usize))
    }

    /// The file a location names, checked to lie inside the model's folder.
    fn resolve(&self, location: &str) -> Result<PathBuf, String> {
        let base = self
            .base_dir
            .as_deref()
            .ok_or("the model has no folder to resolve it in")?;
        let relative = Path::new(location);
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err("'..' is not allowed".into()),
                Component::RootDir | Component::Prefix(_) => {
                    return Err("absolute paths are not allowed".into());
                }
            }
        }
        if location.is_empty() {
            return Err("empty location".into());
        }
        let base = base
            .canonicalize()
            .map_err(|e| format!("model folder {}: {e}", base.display()))?;
        let joined = base.join(relative);
        let real = joined
            .canonicalize()
            .map_err(|e| format!("{}: {e}", joined.display()))?;
        if !real.starts_with(&base) {
            return Err(format!(
                "resolves to {}, outside the model's folder",
                real.display()
            ));
        }
        if !real.is_file() {
            return Err(format!("{} is not a regular file", real.display()));
        }
        Ok(real)
    }
}
