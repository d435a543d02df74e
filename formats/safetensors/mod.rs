//! Importer for safetensors checkpoints: one `.safetensors` file, or a Hugging
//! Face checkpoint folder (single file or sharded through
//! `model.safetensors.index.json`, plus its config and tokenizer files).
//!
//! A checkpoint has no dataflow, so the imported graph is weights only: no
//! inputs, no nodes and no outputs, one weight (added with
//! [`Graph::add_weight`]) per tensor. Weights are not graph outputs because
//! they are not computed results; writers of checkpoint formats iterate
//! `g.weights`, and passes that drop unused weights must leave graphs without
//! nodes alone.
//!
//! Tensor bytes are never copied or read at import: each weight's data is a
//! slice of the memory-mapped file, so importing reads only the headers.

mod header;
mod hf;
mod index;
mod json;
mod roles;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ir::error::{Error, Result};
use crate::ir::graph::Graph;
use crate::ir::weights::{Weight, map_file};
use crate::progress::Progress;

pub use header::MAX_HEADER_BYTES;
pub use hf::architecture;
pub use index::INDEX_FILE;
pub use roles::role_for;

/// The single-file checkpoint name inside a Hugging Face folder.
pub const SINGLE_FILE: &str = "model.safetensors";

/// Imports a `.safetensors` file or a checkpoint folder as a weights-only graph.
///
/// For a folder, the tensors come from `model.safetensors.index.json` (every
/// shard it names) or else `model.safetensors`; `config.json`,
/// `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` go
/// into `metadata.hf` when present, and `metadata.architecture` comes from
/// the config. Every weight's role is derived from its name
/// ([`role_for`]). `__metadata__` entries of the files go into
/// `metadata.props` (the first shard that sets a key wins).
pub fn import(path: &Path, progress: &dyn Progress) -> Result<Graph> {
    let is_dir = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .is_dir();
    if is_dir {
        import_folder(path, progress)
    } else {
        let name = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into());
        load_shards(name, &[path.to_path_buf()], None, progress)
    }
}

fn import_folder(folder: &Path, progress: &dyn Progress) -> Result<Graph> {
    let name = folder
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let index_path = folder.join(INDEX_FILE);
    let single = folder.join(SINGLE_FILE);
    let mut g = if index_path.is_file() {
        let index = index::read(&index_path)?;
        load_shards(name, &index.shards, Some(&index), progress)?
    } else if single.is_file() {
        load_shards(name, &[single], None, progress)?
    } else {
        return Err(Error::Input(format!(
            "{}: no {SINGLE_FILE} or {INDEX_FILE} in this folder",
            folder.display()
        )));
    };
    g.metadata.hf = hf::load(folder)?;
    g.metadata.architecture = g.metadata.hf.config.as_ref().and_then(hf::architecture);
    Ok(g)
}

/// Maps every shard and adds its tensors as weights, shard by shard in
/// header order. With an index, every tensor it lists must be in the shard it
/// names; no tensor may appear in two shards.
fn load_shards(
    name: String,
    shards: &[PathBuf],
    index: Option<&index::ShardIndex>,
    progress: &dyn Progress,
) -> Result<Graph> {
    let mut g = Graph::new(name);
    g.metadata.source_format = "safetensors".into();
    let sizes: Vec<u64> = shards
        .iter()
        .map(|s| {
            std::fs::metadata(s)
                .map(|m| m.len())
                .map_err(|e| Error::io(s, e))
        })
        .collect::<Result<_>>()?;
    progress.start("mapping safetensors", sizes.iter().sum());
    let mut home: HashMap<String, usize> = HashMap::new();
    for (slot, (shard, size)) in shards.iter().zip(sizes).enumerate() {
        let map = map_file(shard)?;
        let header = header::parse(shard, &map)?;
        for tensor in header.tensors {
            if let Some(&other) = home.get(&tensor.name) {
                return Err(Error::parse(
                    shard,
                    header.json.start as u64
                        + json::key_offset(&map[header.json.clone()], &tensor.name, 0).unwrap_or(0),
                    format!(
                        "tensor '{}' is also in {}",
                        tensor.name,
                        shards[other].display()
                    ),
                ));
            }
            home.insert(tensor.name.clone(), slot);
            let mut weight = Weight::new(
                tensor.name,
                tensor.dtype,
                tensor.shape,
                map.slice(tensor.bytes),
            )?;
            weight.role = role_for(&weight.name);
            g.add_weight(weight);
        }
        for (key, value) in header.metadata {
            g.metadata.props.entry(key).or_insert(value);
        }
        progress.advance(size);
    }
    progress.finish();
    if let Some(index) = index {
        for (tensor, slot) in &index.weight_map {
            if home.get(tensor) != Some(slot) {
                return Err(index.entry_error(
                    tensor,
                    format!("tensor is not in {}", shards[*slot].display()),
                ));
            }
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests;
