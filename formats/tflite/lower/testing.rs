//! What the family tests share: lowering a graph given as IR text, with every
//! node checked to be supported first, and reading the result back.

use super::{IoLayout, LowerOptions, lower, support};
use crate::formats::target::Support;
use crate::formats::tflite::model::{TensorId, TflModel};
use crate::formats::tflite::schema as tfl;
use crate::ir::text::parse;

/// `text` lowered with inputs and outputs in `io_layout`.
pub fn lowered_in(text: &str, io_layout: IoLayout) -> TflModel {
    let g = parse(text).unwrap();
    for (id, node) in g.nodes() {
        assert_eq!(support(&g, id), Support::Native, "{}", node.name);
    }
    let opts = LowerOptions {
        io_layout,
        ..LowerOptions::default()
    };
    lower(&g, &opts).unwrap()
}

/// `text` lowered with inputs and outputs in the source layout.
pub fn lowered(text: &str) -> TflModel {
    lowered_in(text, IoLayout::Source)
}

/// The operators' codes in order.
pub fn codes(m: &TflModel) -> Vec<tfl::BuiltinOperator> {
    m.operators.iter().map(|op| op.code).collect()
}

fn constant_words(m: &TflModel, t: TensorId) -> impl Iterator<Item = [u8; 4]> + '_ {
    let bytes = m.tensor(t).data.as_ref().expect("a constant");
    bytes.chunks(4).map(|c| [c[0], c[1], c[2], c[3]])
}

pub fn f32_data(m: &TflModel, t: TensorId) -> Vec<f32> {
    constant_words(m, t).map(f32::from_le_bytes).collect()
}

pub fn i32_data(m: &TflModel, t: TensorId) -> Vec<i32> {
    constant_words(m, t).map(i32::from_le_bytes).collect()
}
