//! Typed access to a node's attributes, with errors naming the node, its op
//! and the attribute.

use std::collections::BTreeMap;

use crate::ir::error::{Error, Result};
use crate::ir::ops::AttrValue;

use super::proto::AttributeProto;
use super::proto::attribute_proto::AttributeType;

/// The attributes of one node.
#[derive(Clone, Copy)]
pub struct Attrs<'a> {
    node: &'a str,
    op: &'a str,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a str, op: &'a str, list: &'a [AttributeProto]) -> Attrs<'a> {
        Attrs { node, op, list }
    }

    /// An error located at this node and attribute.
    pub fn error(&self, attr: &str, msg: impl std::fmt::Display) -> Error {
        Error::node(self.node, self.op, format!("attribute '{attr}': {msg}"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }

    /// The attribute if present, checked to be of type `want`. Attributes of
    /// IR version 1 have no type; they are accepted as they are.
    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>> {
        let Some(a) = self.get(name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(self.error(name, "refers to a function attribute outside a function"));
        }
        if a.r#type != want as i32 && a.r#type != AttributeType::Undefined as i32 {
            let got = AttributeType::try_from(a.r#type)
                .map_or_else(|_| a.r#type.to_string(), |t| t.as_str_name().to_string());
            return Err(self.error(name, format!("is {got}, expected {}", want.as_str_name())));
        }
        Ok(Some(a))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self.int(name, i64::from(default))? != 0)
    }

    /// A non-negative int attribute that must be present.
    pub fn usize(&self, name: &str) -> Result<usize> {
        let v = self
            .opt_int(name)?
            .ok_or_else(|| self.error(name, "is required"))?;
        usize::try_from(v).map_err(|_| self.error(name, format!("{v} is negative")))
    }

    pub fn opt_float(&self, name: &str) -> Result<Option<f32>> {
        Ok(self.typed(name, AttributeType::Float)?.map(|a| a.f))
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<String>> {
        self.typed(name, AttributeType::String)?
            .map(|a| String::from_utf8(a.s.to_vec()).map_err(|_| self.error(name, "is not UTF-8")))
            .transpose()
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self
            .opt_string(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    /// Non-negative ints (sizes, strides, pads).
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>> {
        self.ints(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| usize::try_from(x))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| self.error(name, format!("{v:?} has a negative value")))
            })
            .transpose()
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        self.typed(name, AttributeType::Strings)?
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8(s.to_vec()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| self.error(name, "is not UTF-8"))
            })
            .transpose()
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&'a super::proto::TensorProto>> {
        Ok(self
            .typed(name, AttributeType::Tensor)?
            .and_then(|a| a.t.as_ref()))
    }

    /// Every attribute summarized for an [`crate::ir::ops::CustomOp`].
    pub fn summarize(&self) -> BTreeMap<String, AttrValue> {
        self.list
            .iter()
            .map(|a| (a.name.clone(), summarize(a)))
            .collect()
    }
}

fn summarize(a: &AttributeProto) -> AttrValue {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let tensor = |t: &super::proto::TensorProto| AttrValue::Tensor {
        dtype: super::dtype::from_onnx(t.data_type)
            .map_or_else(|_| format!("onnx type {}", t.data_type), |d| d.name()),
        dims: t.dims.clone(),
    };
    match AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined) {
        AttributeType::Float => AttrValue::Float(a.f),
        AttributeType::Int => AttrValue::Int(a.i),
        AttributeType::String => AttrValue::String(text(&a.s)),
        AttributeType::Floats => AttrValue::Floats(a.floats.clone()),
        AttributeType::Ints => AttrValue::Ints(a.ints.clone()),
        AttributeType::Strings => AttrValue::Strings(a.strings.iter().map(|s| text(s)).collect()),
        AttributeType::Tensor => {
            a.t.as_ref()
                .map_or(AttrValue::Other("empty tensor".into()), tensor)
        }
        AttributeType::Graph => AttrValue::Graph {
            nodes: a.g.as_ref().map_or(0, |g| g.node.len()),
        },
        AttributeType::Graphs => AttrValue::Other(format!("{} graphs", a.graphs.len())),
        AttributeType::Tensors => AttrValue::Other(format!("{} tensors", a.tensors.len())),
        other => AttrValue::Other(other.as_str_name().to_lowercase()),
    }
}
