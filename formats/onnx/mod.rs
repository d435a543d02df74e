//! The ONNX importer: `.onnx` files (and their external data) to the IR.
//!
//! The model is memory-mapped and decoded zero-copy: initializer bytes stay
//! in the map, external data files are mapped too. Every opset from 7 to the
//! newest of ONNX 1.23 is normalized to the IR's one form per op (see
//! [`ops`]); unknown ops become [`Op::Custom`] and [`require_known`] lists
//! them all.

mod attrs;
mod decode;
pub mod dtype;
pub mod export;
mod external;
mod import;
pub mod legalize;
mod names;
pub mod ops;
pub mod proto;
mod tensor;
mod types;

use std::path::Path;

use bytes::Bytes;

use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::{Graph, Op};
use crate::progress::Progress;

pub use tensor::read_tensor_proto;

/// Imports the model at `path`. External data is resolved relative to the
/// model's folder and may not leave it.
pub fn import(path: &Path, progress: &dyn Progress) -> Result<Graph> {
    let data = crate::ir::weights::map_file(path)?;
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import_from(data, path, base, progress)
}

/// Imports a model from bytes already in memory. `path` names it in errors;
/// external data is looked up in `base_dir` (`None`: refused).
pub fn import_bytes(data: Bytes, path: &Path, base_dir: Option<&Path>) -> Result<Graph> {
    import_from(data, path, base_dir, &crate::progress::Silent)
}

fn import_from(
    data: Bytes,
    path: &Path,
    base_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Graph> {
    let model: proto::ModelProto = decode::decode(data, path)?;
    import::import_model(&model, path, base_dir, progress).map_err(|e| e.in_file(path))
}

/// Fails with one [`Error::Unsupported`] listing every custom (unknown) node.
pub fn require_known(g: &Graph) -> Result<()> {
    let unknown: Vec<Unsupported> = g
        .nodes()
        .filter_map(|(_, n)| match &n.op {
            Op::Custom(c) => Some(Unsupported {
                node: n.name.clone(),
                op: if c.domain.is_empty() {
                    c.name.clone()
                } else {
                    format!("{}.{}", c.domain, c.name)
                },
                reason: "not an op the IR models (or an attribute value it cannot represent)"
                    .into(),
            }),
            _ => None,
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported(unknown))
    }
}
