//! IR rewrites that run before lowering: ops TFLite has no builtin for,
//! decomposed into ones it has (one file per family of rewrites).

mod attention;
mod build;
mod norm;
mod quant;
mod shapes;

use crate::formats::target::Support;
use crate::ir::{Graph, Node, OpKind};
use crate::passes::{Pass, Repeat, Stage};

/// The passes `TfliteTarget::legalize` runs, in order.
pub fn passes() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(shapes::RefineShapes),
        Box::new(norm::DecomposeNorms),
        Box::new(attention::DecomposeAttention),
        Box::new(quant::DecomposeQuantization),
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
pub fn support(g: &Graph, node: &Node) -> Support {
    let kind = node.op.kind();
    let checked = if norm::is_norm(kind) {
        norm::check(g, node)
    } else if kind == OpKind::Attention {
        attention::check(g, node)
    } else {
        Err(format!(
            "{} has no TFLite builtin and no decomposition",
            node.op.name()
        ))
    };
    match checked {
        Ok(()) => Support::AfterLegalize(format!(
            "{} is decomposed into TFLite builtins",
            node.op.name()
        )),
        Err(why) => Support::Unsupported(why),
    }
}

/// `Ok` when the legalization turns this QuantizeLinear or DequantizeLinear
/// (with computed parameters) into arithmetic, else why not.
pub fn quantization_arithmetic(g: &Graph, node: &Node) -> Result<(), String> {
    quant::check(g, node)
}
