//! Choosing the importer for a model path.

use std::path::Path;

use edgeconv::formats::{gguf, onnx, safetensors};
use edgeconv::ir::error::{Error, Result};
use edgeconv::ir::graph::Graph;
use edgeconv::progress::Progress;

/// Imports `path`: an `.onnx`, `.safetensors` or `.gguf` file or a
/// checkpoint folder, told apart by extension.
pub fn import(path: &Path, progress: &dyn Progress) -> Result<Graph> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if metadata.is_dir() || extension.eq_ignore_ascii_case("safetensors") {
        safetensors::import(path, progress)
    } else if extension.eq_ignore_ascii_case("onnx") {
        onnx::import(path, progress)
    } else if extension.eq_ignore_ascii_case("gguf") {
        gguf::container::import(path, progress)
    } else {
        Err(Error::Input(format!(
            "{}: cannot tell the model format; expected an .onnx, .safetensors or .gguf file or a checkpoint folder",
            path.display()
        )))
    }
}
