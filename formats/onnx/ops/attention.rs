//! Attention (opsets 23 and 24).

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::AttentionAttrs;

use super::NodeCx;

/// ONNX TensorProto.FLOAT, the softmax precision the interpreter computes in.
const FLOAT: i64 = 1;

pub fn handles(op_type: &str) -> bool {
    op_type == "Attention"
}

/// The IR models Attention without a KV cache (`past_key`, `past_value`,
/// `nonpad_kv_seqlen`), softcap, sliding window or extra outputs; any of
/// those makes the node custom, so coverage reports name it.
pub fn convert(cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let cache = (4..cx.inputs.len()).any(|i| cx.input(i).is_some());
    let window = a.int("left_window_size", -1)? != -1 || a.int("right_window_size", -1)? != -1;
    let precision = a.opt_int("softmax_precision")?.is_some_and(|p| p != FLOAT);
    if cache || window || precision || a.float("softcap", 0.0)? != 0.0 || !cx.keep_outputs(1) {
        return Ok(cx.custom());
    }
    cx.inputs.truncate(4);
    let heads = |name: &str| -> Result<Option<usize>> {
        a.opt_int(name)?
            .map(|n| usize::try_from(n).map_err(|_| a.error(name, format!("{n} is negative"))))
            .transpose()
    };
    Ok(Op::Attention(AttentionAttrs {
        is_causal: a.bool("is_causal", false)?,
        scale: a.opt_float("scale")?,
        q_num_heads: heads("q_num_heads")?,
        kv_num_heads: heads("kv_num_heads")?,
    }))
}
