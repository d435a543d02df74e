//! IR rewrites that run before lowering: ops TFLite has no builtin for,
//! decomposed into ones it has (one file per family of rewrites).

use crate::formats::target::Support;
use crate::ir::{Graph, Node};
use crate::passes::{Pass, Repeat, Stage};

/// The passes `TfliteTarget::legalize` runs, in order.
pub fn passes() -> Vec<Box<dyn Pass>> {
    vec![
        // Opset < 13 softmax over several axes: TFLite normalizes one axis.
        Box::new(crate::formats::onnx::legalize::SoftmaxFlatten),
    ]
}

pub fn stage() -> Stage {
    Stage {
        name: "tflite_legalize",
        passes: passes(),
        repeat: Repeat::Once,
    }
}

/// Support of the ops the lowering leaves to these passes
/// ([`super::lower::Family::Decomposed`]).
pub fn support(_g: &Graph, node: &Node) -> Support {
    Support::Unsupported(format!(
        "{} has no TFLite builtin and no decomposition yet",
        node.op.name()
    ))
}
