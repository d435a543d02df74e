//! Token-id files for text models (see [`super::DataSpec::Tokens`]).
//!
//! Each sequence becomes `input_ids`, plus `attention_mask` (1 on tokens,
//! 0 on padding) and `token_type_ids` (zeros) when the model has those
//! inputs, padded with `pad_id` or truncated to `length`. Text files skip
//! blank lines and lines starting with `#`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Entry, InputSig, SigDim, Signature, Source, batch_of_one, extension};
use crate::calibration::npy::NpyFile;
use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;
use crate::ir::weights::map_file;

/// Longest sequence accepted.
const MAX_LENGTH: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct TokenOptions {
    /// Pad or truncate every sequence to this many tokens. `None`: the
    /// sequence dim of `input_ids` if the model fixes it, else each
    /// sequence keeps its own length.
    pub length: Option<usize>,
    pub pad_id: i64,
    pub ids_input: String,
    pub mask_input: String,
    pub type_input: String,
}

impl Default for TokenOptions {
    fn default() -> TokenOptions {
        TokenOptions {
            length: None,
            pad_id: 0,
            ids_input: "input_ids".into(),
            mask_input: "attention_mask".into(),
            type_input: "token_type_ids".into(),
        }
    }
}

pub(crate) struct Tokens {
    path: PathBuf,
    file: TokenFile,
    length: Option<usize>,
    pad_id: i64,
    /// The graph inputs to fill, in signature order.
    outputs: Vec<(Role, InputSig)>,
}

enum TokenFile {
    /// The file's bytes and each sequence's line number and byte range.
    Text {
        bytes: Bytes,
        lines: Vec<(usize, usize, usize)>,
    },
    Npy(NpyFile),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Ids,
    Mask,
    Types,
}

impl Tokens {
    pub fn open(path: &Path, options: &TokenOptions, signature: &Signature) -> Result<Tokens> {
        let mut outputs = Vec::new();
        for sig in &signature.inputs {
            let role = if sig.name == options.ids_input {
                Role::Ids
            } else if sig.name == options.mask_input {
                Role::Mask
            } else if sig.name == options.type_input {
                Role::Types
            } else {
                return Err(Error::Input(format!(
                    "token files fill '{}', '{}' and '{}'; the model also needs input '{}' ({sig})",
                    options.ids_input, options.mask_input, options.type_input, sig.name
                )));
            };
            if sig
                .dtype
                .is_some_and(|d| !matches!(d, DType::I64 | DType::I32))
            {
                return Err(Error::Input(format!(
                    "input '{}' is {sig}; token ids are made as i64 or i32",
                    sig.name
                )));
            }
            if sig
                .dims
                .as_ref()
                .is_some_and(|d| !(1..=2).contains(&d.len()))
            {
                return Err(Error::Input(format!(
                    "input '{}' is {sig}; token inputs must be [sequence] or [batch, sequence]",
                    sig.name
                )));
            }
            outputs.push((role, sig.clone()));
        }
        let Some((_, ids)) = outputs.iter().find(|(r, _)| *r == Role::Ids) else {
            return Err(Error::Input(format!(
                "the model has no input '{}' for token ids; its inputs are: {}",
                options.ids_input,
                signature.names()
            )));
        };
        let fixed = match ids.dims.as_deref().and_then(|d| d.last()) {
            Some(SigDim::Fixed(n)) => Some(*n),
            _ => None,
        };
        let length = options.length.or(fixed);
        if length.is_some_and(|n| n == 0 || n > MAX_LENGTH) {
            return Err(Error::Input(format!(
                "token length {} must be 1 to {MAX_LENGTH}",
                length.unwrap_or(0)
            )));
        }
        let file = if extension(path).as_deref() == Some("npy") {
            let npy = NpyFile::open(path)?;
            if npy.shape().len() != 2 || !matches!(npy.dtype(), DType::I64 | DType::I32) {
                return Err(Error::Input(format!(
                    "{}: token ids must be an int64 or int32 array [sequences, length], not {} {:?}",
                    path.display(),
                    npy.dtype(),
                    npy.shape()
                )));
            }
            TokenFile::Npy(npy)
        } else {
            let bytes = map_file(path)?;
            let lines = index_lines(&bytes);
            TokenFile::Text { bytes, lines }
        };
        Ok(Tokens {
            path: path.to_path_buf(),
            file,
            length,
            pad_id: options.pad_id,
            outputs,
        })
    }

    /// The ids of sequence `index` and where they came from.
    fn sequence(&self, index: usize) -> Result<(Vec<i64>, PathBuf)> {
        match &self.file {
            TokenFile::Npy(npy) => {
                let row = npy.row(index)?;
                let location = PathBuf::from(format!("{}[{index}]", self.path.display()));
                let ids = row.to_i64_vec()?;
                Ok((ids, location))
            }
            TokenFile::Text { bytes, lines } => {
                let (line, start, end) = lines[index];
                let location = PathBuf::from(format!("{}:{line}", self.path.display()));
                let text = std::str::from_utf8(&bytes[start..end]).map_err(|e| {
                    Error::parse(
                        &self.path,
                        (start + e.valid_up_to()) as u64,
                        format!("line {line} is not UTF-8 text"),
                    )
                })?;
                let mut ids = Vec::new();
                for word in text.split_ascii_whitespace() {
                    let offset = word.as_ptr() as usize - text.as_ptr() as usize + start;
                    let id = word.parse::<i64>().map_err(|_| {
                        Error::parse(
                            &self.path,
                            offset as u64,
                            format!("line {line}: '{word}' is not a token id"),
                        )
                    })?;
                    if ids.len() == MAX_LENGTH {
                        return Err(Error::parse(
                            &self.path,
                            offset as u64,
                            format!("line {line}: more than {MAX_LENGTH} tokens"),
                        ));
                    }
                    ids.push(id);
                }
                Ok((ids, location))
            }
        }
    }
}

/// (line number, start, end) of every line holding a sequence.
fn index_lines(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let end = start + line.len();
        let trimmed = line.trim_ascii();
        if !trimmed.is_empty() && !trimmed.starts_with(b"#") {
            lines.push((number + 1, start, end));
        }
        start = end + 1;
    }
    lines
}

impl Source for Tokens {
    fn len(&self) -> usize {
        match &self.file {
            TokenFile::Text { lines, .. } => lines.len(),
            TokenFile::Npy(npy) => npy.shape()[0],
        }
    }

    fn load(&self, index: usize) -> Result<Vec<Entry>> {
        let (mut ids, file) = self.sequence(index)?;
        if let Some(&bad) = ids.iter().find(|&&id| id < 0) {
            return Err(Error::Input(format!(
                "{}: token id {bad} is negative",
                file.display()
            )));
        }
        let real = ids.len();
        let length = self.length.unwrap_or(real);
        if length == 0 {
            return Err(Error::Input(format!("{}: empty sequence", file.display())));
        }
        ids.resize(length, self.pad_id);
        let real = real.min(length);
        self.outputs
            .iter()
            .map(|(role, sig)| {
                let values: Vec<i64> = match role {
                    Role::Ids => ids.clone(),
                    Role::Mask => (0..length).map(|i| i64::from(i < real)).collect(),
                    Role::Types => vec![0; length],
                };
                let shape = batch_of_one(sig, &[length]);
                let tensor = Tensor::from_i64(&shape, values)?;
                let tensor = match sig.dtype {
                    Some(DType::I32) => {
                        if let Some(&big) = ids.iter().find(|&&id| i32::try_from(id).is_err()) {
                            return Err(Error::Input(format!(
                                "input '{}' from {}: token id {big} does not fit int32",
                                sig.name,
                                file.display()
                            )));
                        }
                        tensor.cast(DType::I32)?
                    }
                    _ => tensor,
                };
                Ok(Entry {
                    input: sig.name.clone(),
                    tensor,
                    file: file.clone(),
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("token ids in {}", self.path.display())
    }

    fn locate(&self, index: usize) -> String {
        match &self.file {
            TokenFile::Text { lines, .. } => format!("{}:{}", self.path.display(), lines[index].0),
            TokenFile::Npy(_) => format!("{}[{index}]", self.path.display()),
        }
    }
}
