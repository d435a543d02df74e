//! Lowering of the linalg family (see [`super::support::family`]).

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::{Graph, Node};

use super::Lowerer;

pub fn support(_g: &Graph, node: &Node) -> Support {
    Support::Unsupported(format!("{} is not lowered to TFLite yet", node.op.name()))
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    Err(lx.error(format!("{} is not lowered to TFLite yet", node.op.name())))
}
