//! LSTM and GRU.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{RnnAttrs, RnnDirection};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(op_type, "LSTM" | "GRU")
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let direction = match a.string("direction", "forward")?.as_str() {
        "forward" => RnnDirection::Forward,
        "reverse" => RnnDirection::Reverse,
        "bidirectional" => RnnDirection::Bidirectional,
        other => return Err(a.error("direction", format!("'{other}' is not a direction"))),
    };
    let attrs = RnnAttrs {
        hidden_size: a.usize("hidden_size")?,
        direction,
        activations: a.strings("activations")?.unwrap_or_default(),
        activation_alpha: a.floats("activation_alpha")?.unwrap_or_default(),
        activation_beta: a.floats("activation_beta")?.unwrap_or_default(),
        clip: a.opt_float("clip")?,
        batch_first: a.bool("layout", false)?,
        input_forget: a.bool("input_forget", false)?,
        linear_before_reset: a.bool("linear_before_reset", false)?,
    };
    Ok(if op_type == "LSTM" {
        Op::Lstm(attrs)
    } else {
        Op::Gru(attrs)
    })
}
