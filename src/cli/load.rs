//! Choosing the importer for a model path.

use std::path::Path;

use edgeconv::formats::safetensors;
use edgeconv::ir::error::{Error, Result};
use edgeconv::ir::graph::Graph;
use edgeconv::progress::Progress;

/// Imports `path`: a `.safetensors` file or a checkpoint folder.
pub fn import(path: &Path, progress: &dyn Progress) -> Result<Graph> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if metadata.is_dir() || extension.eq_ignore_ascii_case("safetensors") {
        return safetensors::import(path, progress);
    }
    Err(Error::Input(format!(
        "{}: cannot tell the model format; expected a .safetensors file or a checkpoint folder",
        path.display()
    )))
}
