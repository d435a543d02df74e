//! The GGUF v3 container (shared/reference/gguf/gguf.md): header, typed
//! metadata, tensor infos, aligned tensor data. `read` parses a file with
//! every length and count checked against the bytes left before anything is
//! allocated; `write` streams a file whose tensor payloads are produced on
//! demand; `import` makes a weights-only graph of a file's tensors.

mod import;
mod read;
mod write;

pub use import::import;
pub use read::{GgufFile, TensorInfo, read};
pub use write::{TensorSpec, write};

pub use crate::ir::meta::{MetaType, MetaValue as GgufValue};

/// `GGUF` as a little-endian u32.
pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// llama.cpp's `GGML_MAX_NAME` less its terminating NUL.
pub const MAX_NAME_BYTES: usize = 63;
/// Arrays nested deeper than this are refused (GGUF files in the wild nest none).
pub const MAX_NESTING: usize = 8;

#[cfg(test)]
mod tests;
