//! Protobuf decoding with located errors.
//!
//! prost reports what failed (the message path) but not where; decoding
//! through [`TrackedBuf`] records how far it got, which is the byte offset of
//! the failure. Bytes fields stay zero-copy slices of the input.

use std::path::Path;

use bytes::{Buf, Bytes};
use prost::Message;

use crate::ir::error::{Error, Result};

/// A [`Bytes`] reader that remembers how many bytes were consumed.
struct TrackedBuf {
    inner: Bytes,
    total: usize,
}

impl TrackedBuf {
    fn offset(&self) -> u64 {
        (self.total - self.inner.remaining()) as u64
    }
}

impl Buf for TrackedBuf {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.inner.advance(cnt);
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        self.inner.copy_to_bytes(len)
    }
}

/// Decodes one message of type `M` from `data`; a failure is an
/// [`Error::Parse`] naming `path` and the byte offset where decoding stopped.
pub fn decode<M: Message + Default>(data: Bytes, path: &Path) -> Result<M> {
    let total = data.len();
    let mut buf = TrackedBuf { inner: data, total };
    let mut message = M::default();
    match message.merge(&mut buf) {
        Ok(()) => Ok(message),
        Err(e) => Err(Error::parse(
            path,
            buf.offset(),
            format!("not a valid ONNX protobuf ({e})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::onnx::proto::{GraphProto, ModelProto, NodeProto};

    fn model_bytes() -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn every_truncation_is_a_located_error() {
        let bytes = model_bytes();
        for cut in 1..bytes.len() {
            let data = Bytes::copy_from_slice(&bytes[..cut]);
            if let Err(e) = decode::<ModelProto>(data, Path::new("m.onnx")) {
                let Error::Parse { path, offset, .. } = &e else {
                    panic!("{e}")
                };
                assert_eq!(path, Path::new("m.onnx"));
                assert!(*offset <= cut as u64, "{e}");
            }
        }
        let whole: ModelProto = decode(Bytes::from(bytes), Path::new("m.onnx")).unwrap();
        assert_eq!(whole.ir_version, 8);
    }

    #[test]
    fn garbage_reports_offset_and_file() {
        let e = decode::<ModelProto>(Bytes::from_static(&[0x08, 0x01, 0xff]), Path::new("x"))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("x: at byte "), "{text}");
    }
}
