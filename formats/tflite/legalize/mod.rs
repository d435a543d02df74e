//! IR rewrites that run before lowering: ops TFLite has no builtin for,
//! decomposed into ones it has (one file per family of rewrites).

mod activations;
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
        // Opset < 13 softmax over several axes: TFLite normalizes one axis.
        Box::new(crate::formats::onnx::legalize::SoftmaxFlatten),
        Box::new(norm::DecomposeNorms),
        Box::new(attention::DecomposeAttention),
        Box::new(quant::DecomposeQuantization),
    ]
}

/// Run before full-integer quantization, after [`stage`]: gives every
/// value an int8 operator writes an IR value (see `activations.rs`).
pub fn int8_stage() -> Stage {
    Stage {
        name: "tflite_int8_legalize",
        passes: vec![Box::new(activations::SplitActivations)],
        repeat: Repeat::Once,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::{Family, family};
    use crate::ir::text::parse;
    use crate::passes::{RunOptions, run_stages};

    #[test]
    fn what_support_promises_the_stage_rewrites() {
        let mut g = parse(
            "graph g {
  input x: f32[2,3,4]
  input q: f32[1,2,3,4]
  input s: f32[]
  input h: f16[2,4]
  weight w: f32[4] = [1,2,3,4]
  weight hs: f16[4] = [1,2,3,4]
  node ln: y: f32[2,3,4] = LayerNormalization {\"axis\":-1,\"epsilon\":1e-5} (x, w, w)
  node at: z: f32[1,2,3,4] = Attention {\"is_causal\":true,\"scale\":null,\"q_num_heads\":null,\"kv_num_heads\":null} (q, q, q, _)
  node qz: u: u8[2,3,4] = QuantizeLinear {\"axis\":1,\"saturate\":true,\"block_size\":0,\"output_dtype\":null} (x, s, _)
  node rms: r: f16[2,4] = RmsNormalization {\"axis\":-1,\"epsilon\":1e-5} (h, hs)
  output y, z, u, r
}",
        )
        .unwrap();
        let promised: Vec<(String, Support)> = g
            .nodes()
            .map(|(id, n)| {
                (
                    n.name.clone(),
                    crate::formats::tflite::lower::support(&g, id),
                )
            })
            .collect();
        for (name, s) in &promised {
            match name.as_str() {
                "rms" => assert!(matches!(s, Support::Unsupported(_)), "{s:?}"),
                _ => assert!(matches!(s, Support::AfterLegalize(_)), "{name}: {s:?}"),
            }
        }
        run_stages(&mut g, &[stage()], &RunOptions::default()).unwrap();
        let left: Vec<&str> = g
            .nodes()
            .filter(|(_, n)| family(n.op.kind()) == Family::Decomposed)
            .map(|(_, n)| n.name.as_str())
            .collect();
        assert_eq!(left, ["rms"]);
        assert!(
            g.nodes()
                .all(|(_, n)| n.op.kind() != OpKind::QuantizeLinear)
        );
    }

    #[test]
    fn layer_norm_lowers_to_squared_difference_and_rsqrt() {
        use crate::formats::tflite::lower::{LowerOptions, lower};
        use crate::formats::tflite::schema::BuiltinOperator as B;
        let mut g = parse(
            "graph g {
  input x: f32[2,3,4]
  weight w: f32[4] = [1,2,3,4]
  node ln: y: f32[2,3,4] = LayerNormalization {\"axis\":-1,\"epsilon\":1e-5} (x, w, w)
  output y
}",
        )
        .unwrap();
        run_stages(&mut g, &[stage()], &RunOptions::default()).unwrap();
        let m = lower(&g, &LowerOptions::default()).unwrap();
        let codes: Vec<B> = m.operators.iter().map(|o| o.code).collect();
        for (code, n) in [
            (B::SQUARED_DIFFERENCE, 1),
            (B::RSQRT, 1),
            (B::SQRT, 0),
            (B::DIV, 0),
        ] {
            assert_eq!(
                codes.iter().filter(|&&c| c == code).count(),
                n,
                "{code:?} in {codes:?}"
            );
        }
    }
}
