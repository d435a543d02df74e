//! `model.safetensors.index.json`: which shard file holds each tensor of a
//! sharded checkpoint.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::json::{key_offset, parse_error, read_capped};
use crate::ir::error::{Error, Result};

/// The file name Hugging Face gives the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Largest index file accepted (real ones are well under 1 MB).
const MAX_INDEX_BYTES: u64 = 100_000_000;

/// A parsed index, with shard paths resolved inside the checkpoint folder.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardIndex {
    /// Distinct shard files, in order of first mention.
    pub shards: Vec<PathBuf>,
    /// Every tensor name with the index into `shards` of the file that holds it.
    pub weight_map: Vec<(String, usize)>,
    path: PathBuf,
    text: Vec<u8>,
}

impl ShardIndex {
    /// An error about the `weight_map` entry of `tensor`, located in the index file.
    pub fn entry_error(&self, tensor: &str, msg: String) -> Error {
        Error::parse(
            &self.path,
            key_offset(&self.text, tensor, 0).unwrap_or(0),
            format!("weight_map entry '{tensor}': {msg}"),
        )
    }
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: OrderedEntries<String>,
}

/// Reads the index at `path`, whose shards must lie inside `path`'s folder:
/// relative paths without `..`, not escaping through symlinks.
pub fn read(path: &Path) -> Result<ShardIndex> {
    let text = read_capped(path, MAX_INDEX_BYTES)?;
    let raw: RawIndex =
        serde_json::from_slice(&text).map_err(|e| parse_error(path, 0, &text, &e))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let canonical_folder = folder.canonicalize().map_err(|e| Error::io(folder, e))?;
    let mut shards: Vec<PathBuf> = Vec::new();
    let mut weight_map = Vec::with_capacity(raw.weight_map.0.len());
    let mut names = std::collections::HashSet::new();
    for (name, shard) in raw.weight_map.0 {
        let fail = |occurrence: usize, msg: String| {
            Error::parse(
                path,
                key_offset(&text, &name, occurrence).unwrap_or(0),
                format!("weight_map entry '{name}': {msg}"),
            )
        };
        if !names.insert(name.clone()) {
            return Err(fail(1, "listed twice".into()));
        }
        let resolved =
            resolve_shard(folder, &canonical_folder, &shard).map_err(|msg| fail(0, msg))?;
        let slot = match shards.iter().position(|s| *s == resolved) {
            Some(i) => i,
            None => {
                shards.push(resolved);
                shards.len() - 1
            }
        };
        weight_map.push((name, slot));
    }
    Ok(ShardIndex {
        shards,
        weight_map,
        path: path.to_path_buf(),
        text,
    })
}

/// The path of shard `relative` if it stays inside the checkpoint folder.
fn resolve_shard(
    folder: &Path,
    canonical_folder: &Path,
    relative: &str,
) -> std::result::Result<PathBuf, String> {
    let shard = Path::new(relative);
    let plain = !relative.is_empty()
        && shard
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "shard path '{relative}' must be a plain relative path inside the checkpoint folder"
        ));
    }
    let joined = folder.join(shard);
    let canonical = joined
        .canonicalize()
        .map_err(|e| format!("shard '{relative}': {e}"))?;
    if !canonical.starts_with(canonical_folder) {
        return Err(format!(
            "shard '{relative}' resolves to {}, outside the checkpoint folder",
            canonical.display()
        ));
    }
    Ok(joined)
}

/// A JSON object as its entries in document order, duplicates kept.
struct OrderedEntries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedEntries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = OrderedEntries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedEntries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(OrderedEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
