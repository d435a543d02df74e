//! NodeProto -> [`Op`], one file per op family.
//!
//! Every opset form (7 up to the newest of ONNX 1.23) is normalized to the
//! IR's single form: attributes that later became inputs are added as
//! constant weight inputs, legacy semantics become flags. A node the IR
//! cannot represent (unknown op or domain, or an attribute value without an
//! IR equivalent) becomes [`Op::Custom`].

mod attention;
mod conv;
mod elementwise;
mod index;
mod linalg;
mod misc;
mod norm;
mod quant;
mod reduce;
mod resize;
mod rnn;
mod shape;

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;

use crate::ir::error::{Error, Result};
use crate::ir::ops::CustomOp;
use crate::ir::{DType, Fact, Graph, Op, Tensor, ValueId, Weight};

use super::attrs::Attrs;
use super::names::Names;
use super::proto::NodeProto;

/// Everything a converter needs about one node, and the graph to add
/// constant inputs to.
pub struct NodeCx<'a> {
    /// The model file, for errors about tensors in attributes.
    pub file: &'a Path,
    pub node: &'a NodeProto,
    /// The node's IR name (its ONNX name or a generated unique one).
    pub name: &'a str,
    /// The opset version of the node's domain.
    pub opset: i64,
    pub attrs: Attrs<'a>,
    /// Positional inputs (absent optional inputs are `None`); converters
    /// may add constant inputs.
    pub inputs: Vec<Option<ValueId>>,
    /// ONNX output names, `""` for an absent optional output; converters may
    /// drop trailing outputs the IR op does not have.
    pub outputs: Vec<String>,
    pub graph: &'a mut Graph,
    pub names: &'a mut Names,
    /// Names of values some node or the graph output reads.
    pub used: &'a HashSet<String>,
}

impl NodeCx<'_> {
    /// An error located at this node.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::node(self.name, &self.node.op_type, msg)
    }

    /// An error for a well-formed node that asks for something edgeconv does
    /// not support (exit 3, unlike [`NodeCx::error`]).
    pub fn unsupported(&self, reason: impl Into<String>) -> Error {
        Error::Unsupported(vec![crate::ir::error::Unsupported {
            node: self.name.to_string(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }])
    }

    /// The node as an op the IR does not model, its attributes summarized.
    pub fn custom(&self) -> Op {
        Op::Custom(CustomOp {
            domain: self.node.domain.clone(),
            name: self.node.op_type.clone(),
            attrs: self.attrs.summarize(),
        })
    }

    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn fact(&self, i: usize) -> Option<&Fact> {
        self.input(i).map(|v| self.graph.fact(v))
    }

    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.fact(i).and_then(|f| f.dtype)
    }

    pub fn rank(&self, i: usize) -> Option<usize> {
        self.fact(i).and_then(|f| f.shape.rank())
    }

    /// The value of input `i` when it is a constant (a weight).
    pub fn constant(&self, i: usize) -> Option<Tensor> {
        let w = self.graph.weight_of(self.input(i)?)?;
        super::tensor::weight_to_tensor(w).ok()
    }

    /// Integer contents of a constant input.
    pub fn constant_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.constant(i)?.to_i64_vec().ok()
    }

    /// Whether output `i` exists and something reads it.
    pub fn output_used(&self, i: usize) -> bool {
        self.outputs
            .get(i)
            .is_some_and(|n| !n.is_empty() && self.used.contains(n))
    }

    /// Sets input `i`, padding with absent inputs.
    pub fn set_input(&mut self, i: usize, v: Option<ValueId>) {
        if self.inputs.len() <= i {
            self.inputs.resize(i + 1, None);
        }
        self.inputs[i] = v;
    }

    /// Adds a constant weight named after this node and `purpose`.
    pub fn add_constant(&mut self, purpose: &str, tensor: &Tensor) -> Result<ValueId> {
        let name = self.names.unique(&format!("{}_{purpose}", self.name));
        let w = Weight::new(
            name,
            tensor.dtype(),
            tensor.shape().to_vec(),
            Bytes::from(tensor.to_bytes()),
        )?;
        Ok(self.graph.add_weight(w))
    }

    /// Adds a 1-D i64 constant (axes, pads, shapes) as input `i`.
    pub fn set_ints_input(&mut self, i: usize, purpose: &str, values: &[i64]) -> Result<()> {
        let t = Tensor::from_i64(&[values.len()], values.to_vec())?;
        let v = self.add_constant(purpose, &t)?;
        self.set_input(i, Some(v));
        Ok(())
    }

    /// Adds a scalar constant of `dtype` (the input's type when known) as input `i`.
    pub fn set_scalar_input(
        &mut self,
        i: usize,
        purpose: &str,
        value: f64,
        dtype: DType,
    ) -> Result<()> {
        let t = Tensor::F64(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), value))
            .cast(dtype)
            .map_err(|e| self.error(e.to_string()))?;
        let v = self.add_constant(purpose, &t)?;
        self.set_input(i, Some(v));
        Ok(())
    }

    /// Keeps only the first `n` outputs; the others must be absent or unread.
    pub fn keep_outputs(&mut self, n: usize) -> bool {
        if (n..self.outputs.len()).any(|i| self.output_used(i)) {
            return false;
        }
        self.outputs.truncate(n);
        true
    }
}

/// Converts a node of the default ONNX domain; unknown ops become custom.
pub fn convert(cx: &mut NodeCx) -> Result<Op> {
    let op_type = cx.node.op_type.clone();
    let op = match op_type.as_str() {
        t if elementwise::handles(t) => elementwise::convert(t, cx)?,
        t if linalg::handles(t) => linalg::convert(t, cx)?,
        t if conv::handles(t) => conv::convert(t, cx)?,
        t if norm::handles(t) => norm::convert(t, cx)?,
        t if attention::handles(t) => attention::convert(cx)?,
        t if reduce::handles(t) => reduce::convert(t, cx)?,
        t if shape::handles(t) => shape::convert(t, cx)?,
        t if index::handles(t) => index::convert(t, cx)?,
        t if resize::handles(t) => resize::convert(t, cx)?,
        t if quant::handles(t) => quant::convert(t, cx)?,
        t if rnn::handles(t) => rnn::convert(t, cx)?,
        t if misc::handles(t) => misc::convert(t, cx)?,
        _ => cx.custom(),
    };
    Ok(op)
}
