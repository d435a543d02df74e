//! The `.mlpackage` folder: `Manifest.json`, the model protobuf and the weights
//! file (MLPACKAGE_NOTES.md, sections 1 and 2).
//!
//! The manifest's item identifiers are UUIDs derived from the model bytes
//! (coremltools draws random ones), so the same conversion gives the same package.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::blob::{BlobFile, BlobReader};
use super::proto::Model;
use crate::ir::error::{Error, Result};
use crate::output::AtomicDir;

const AUTHOR: &str = "com.apple.CoreML";
const MODEL_NAME: &str = "model.mlmodel";
const WEIGHTS_DIR: &str = "weights";
const WEIGHTS_FILE: &str = "weight.bin";
/// How MIL names the weights file in a `BlobFileValue`.
pub const WEIGHTS_PATH_IN_MIL: &str = "@model_path/weights/weight.bin";
/// Larger manifests or model protobufs are refused before reading.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_MODEL_BYTES: u64 = 1 << 31;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    file_format_version: String,
    item_info_entries: BTreeMap<String, ItemInfo>,
    root_model_identifier: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemInfo {
    author: String,
    description: String,
    name: String,
    path: String,
}

/// Writes the package folder at `out` whole or not at all. `progress` is told
/// the weight bytes written so far.
pub fn write(
    out: &Path,
    model: &Model,
    weights: &BlobFile,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let folder = AtomicDir::create(out).map_err(io(out))?;
    let data = folder.path().join("Data").join(AUTHOR);
    std::fs::create_dir_all(data.join(WEIGHTS_DIR)).map_err(io(out))?;
    let model_bytes = model.encode_to_vec();
    std::fs::write(data.join(MODEL_NAME), &model_bytes).map_err(io(out))?;
    let weights_path = data.join(WEIGHTS_DIR).join(WEIGHTS_FILE);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&weights_path).map_err(io(out))?);
    weights.write(&mut file, progress).map_err(io(out))?;
    file.flush().map_err(io(out))?;
    let manifest = manifest(&model_bytes);
    let mut json = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut json, formatter);
    manifest
        .serialize(&mut serializer)
        .expect("a manifest serializes");
    json.push(b'\n');
    std::fs::write(folder.path().join("Manifest.json"), &json).map_err(io(out))?;
    folder.commit().map_err(io(out))?;
    Ok(model_bytes.len() as u64 + weights.file_bytes() + json.len() as u64)
}

fn manifest(model_bytes: &[u8]) -> Manifest {
    let model_id = uuid_from(&[b"model", model_bytes]);
    let weights_id = uuid_from(&[b"weights", model_bytes]);
    let item = |name: &str, description: &str| ItemInfo {
        author: AUTHOR.into(),
        description: description.into(),
        name: name.into(),
        path: format!("{AUTHOR}/{name}"),
    };
    Manifest {
        file_format_version: "1.0.0".into(),
        item_info_entries: BTreeMap::from([
            (
                model_id.clone(),
                item(MODEL_NAME, "CoreML Model Specification"),
            ),
            (weights_id, item(WEIGHTS_DIR, "CoreML Model Weights")),
        ]),
        root_model_identifier: model_id,
    }
}

/// A version-8 (name-based, custom) UUID from the SHA-256 of `parts`.
fn uuid_from(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let mut b: [u8; 16] = hash.finalize()[..16].try_into().unwrap();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A package read back: the model and, when it has one, its weights file.
pub struct Package {
    pub model: Model,
    pub weights: Option<BlobReader>,
    /// The root model file, for error locations.
    pub model_path: PathBuf,
}

/// Reads a package folder: checks the manifest as Core ML's validator does
/// (version, four string fields per item, the root item exists), decodes the
/// root model and maps the weights file if there is one.
pub fn read(path: &Path) -> Result<Package> {
    let manifest_path = path.join("Manifest.json");
    let manifest_bytes = read_capped(&manifest_path, MAX_MANIFEST_BYTES)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| Error::Parse {
        path: manifest_path.clone(),
        offset: 0,
        msg: format!("not a package manifest: {e}"),
    })?;
    let bad = |msg: String| Error::Parse {
        path: manifest_path.clone(),
        offset: 0,
        msg,
    };
    if manifest.file_format_version != "1.0.0" {
        return Err(bad(format!(
            "file format version {:?}, expected \"1.0.0\"",
            manifest.file_format_version
        )));
    }
    let root = manifest
        .item_info_entries
        .get(&manifest.root_model_identifier)
        .ok_or_else(|| {
            bad(format!(
                "root model {:?} is not an item",
                manifest.root_model_identifier
            ))
        })?;
    let data = path.join("Data");
    let model_path = item_path(&data, &root.path)
        .ok_or_else(|| bad(format!("item path {:?} leaves the package", root.path)))?;
    let model_bytes = read_capped(&model_path, MAX_MODEL_BYTES)?;
    let model = Model::decode(model_bytes.as_slice()).map_err(|e| Error::Parse {
        path: model_path.clone(),
        offset: 0,
        msg: format!("not a Core ML model protobuf: {e}"),
    })?;
    let weights_path = model_path.with_file_name(WEIGHTS_DIR).join(WEIGHTS_FILE);
    let weights = if weights_path.is_file() {
        let map = crate::ir::weights::map_file(&weights_path)?;
        Some(BlobReader::new(&weights_path, map)?)
    } else {
        None
    };
    Ok(Package {
        model,
        weights,
        model_path,
    })
}

/// `Data/<path>`, refusing absolute paths and `..`.
fn item_path(data: &Path, item: &str) -> Option<PathBuf> {
    let relative = Path::new(item);
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    plain.then(|| data.join(relative))
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > cap {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            offset: 0,
            msg: format!("{len} bytes exceeds the limit of {cap}"),
        });
    }
    std::fs::read(path).map_err(io)
}
