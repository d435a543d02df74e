//! GGUF, llama.cpp's model format: the container (`container/`), the tensor
//! types (`types`), Hugging Face checkpoints mapped onto llama.cpp
//! architectures (`llm`) with their tokenizers (`tokenizer`), the file-type
//! mixes of `llama-quantize` (`mix`), importance matrices (`imatrix`), and
//! the target that writes it all (`target`, `source`, `payload`).

pub mod container;
pub mod imatrix;
pub mod kv;
pub mod llm;
pub mod mix;
pub mod payload;
pub mod source;
pub mod target;
pub mod tokenizer;
pub mod types;
