//! The reference interpreter: runs a [`Graph`] on concrete tensors.
//!
//! Semantics are those of the ONNX operator of the same name (see
//! [`crate::ir::ops`]). Float ops compute in f32 (f64 inputs in f64; f16 and
//! bf16 through f32 and back); integer ops compute in their own type. Kernels
//! never panic on bad shapes or values: they return an error naming the
//! problem, which [`run`] wraps with the node's name and op.

#[macro_use]
mod numeric;

mod attention;
mod broadcast;
mod conv;
mod elementwise;
mod gather_scatter;
mod matmul;
mod misc;
mod norm;
mod operands;
mod pool;
mod quant;
mod reduce;
mod resize;
mod rnn;
mod shape_ops;
mod softmax;

use std::collections::BTreeMap;

use operands::Args;

use super::error::{Error, Result, Unsupported};
use super::graph::{Graph, SymId, ValueDef, ValueId};
use super::ops::Op;
use super::shape::Dim;
use super::tensor::Tensor;

pub use operands::MAX_ELEMENTS;
pub use resize::source_coordinate;

/// Runs the graph; `inputs` in `g.inputs` order; returns `g.outputs` in order.
///
/// Inputs are checked against their facts (count, dtype, rank, fixed dims, and
/// one value per symbol). Weights are decoded when first used and every
/// intermediate is freed after its last use.
pub fn run(g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    run_observed(g, inputs, &mut |_, _| {})
}

/// Same as [`run`], calling `observe(value, tensor)` for every node output as
/// it is computed (calibration observers use this).
pub fn run_observed(
    g: &Graph,
    inputs: Vec<Tensor>,
    observe: &mut dyn FnMut(ValueId, &Tensor),
) -> Result<Vec<Tensor>> {
    check_inputs(g, &inputs)?;
    let order = g.topo_order()?;
    let custom: Vec<Unsupported> = order
        .iter()
        .map(|&id| g.node(id))
        .filter(|n| matches!(n.op, Op::Custom(_)))
        .map(|n| Unsupported {
            node: n.name.clone(),
            op: n.op.name().to_string(),
            reason: "custom ops cannot be evaluated".into(),
        })
        .collect();
    if !custom.is_empty() {
        return Err(Error::Unsupported(custom));
    }

    let mut uses = vec![0usize; g.value_count()];
    for &id in &order {
        for v in g.node(id).inputs.iter().flatten() {
            uses[v.index()] += 1;
        }
    }
    for v in &g.outputs {
        uses[v.index()] += 1;
    }

    let mut slots: Vec<Option<Tensor>> = vec![None; g.value_count()];
    for (&v, t) in g.inputs.iter().zip(inputs) {
        slots[v.index()] = Some(t);
    }

    for id in order {
        let node = g.node(id);
        for v in node.inputs.iter().flatten() {
            load(g, *v, &mut slots)?;
        }
        let args: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| slots[v.index()].as_ref()))
            .collect();
        let fail = |msg: String| Error::node(&node.name, node.op.name(), msg);
        let results = eval_op(&node.op, &args).map_err(fail)?;
        if results.len() < node.outputs.len() {
            return Err(fail(format!(
                "produced {} outputs, the node has {}",
                results.len(),
                node.outputs.len()
            )));
        }
        for v in node.inputs.iter().flatten() {
            uses[v.index()] -= 1;
            if uses[v.index()] == 0 {
                slots[v.index()] = None;
            }
        }
        for (&v, t) in node.outputs.iter().zip(results) {
            observe(v, &t);
            if uses[v.index()] > 0 {
                slots[v.index()] = Some(t);
            }
        }
    }

    g.outputs
        .iter()
        .map(|&v| {
            load(g, v, &mut slots)?;
            uses[v.index()] -= 1;
            let t = if uses[v.index()] == 0 {
                slots[v.index()].take()
            } else {
                slots[v.index()].clone()
            };
            t.ok_or_else(|| Error::Graph(format!("output '{}' was not computed", g.value(v).name)))
        })
        .collect()
}

/// Makes sure `v` has a tensor in `slots`, decoding it if it is a weight.
fn load(g: &Graph, v: ValueId, slots: &mut [Option<Tensor>]) -> Result<()> {
    if slots[v.index()].is_some() {
        return Ok(());
    }
    let value = g.value(v);
    match value.def {
        ValueDef::Weight(w) => {
            let w = g.weights.get(w);
            let t = Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                .map_err(|e| Error::Graph(format!("weight '{}': {e}", w.name)))?;
            slots[v.index()] = Some(t);
            Ok(())
        }
        _ => Err(Error::Graph(format!(
            "value '{}' is used before it is computed",
            value.name
        ))),
    }
}

fn check_inputs(g: &Graph, inputs: &[Tensor]) -> Result<()> {
    if inputs.len() != g.inputs.len() {
        return Err(Error::Input(format!(
            "the graph takes {} inputs, {} were given",
            g.inputs.len(),
            inputs.len()
        )));
    }
    let mut symbols: BTreeMap<SymId, usize> = BTreeMap::new();
    for (&v, t) in g.inputs.iter().zip(inputs) {
        let value = g.value(v);
        let name = &value.name;
        if let Some(dtype) = value.fact.dtype {
            if numeric::held_dtype(dtype) != t.dtype() {
                return Err(Error::Input(format!(
                    "input '{name}' must be {dtype}, got {}",
                    t.dtype()
                )));
            }
        }
        let Some(dims) = value.fact.shape.dims() else {
            continue;
        };
        if dims.len() != t.shape().len() {
            return Err(Error::Input(format!(
                "input '{name}' must have rank {}, got shape {:?}",
                dims.len(),
                t.shape()
            )));
        }
        for (i, (dim, &actual)) in dims.iter().zip(t.shape()).enumerate() {
            let consistent = match dim {
                Dim::Fixed(n) => *n == actual as u64,
                _ => match dim.as_symbol() {
                    Some(s) => *symbols.entry(s).or_insert(actual) == actual,
                    None => true,
                },
            };
            if !consistent {
                return Err(Error::Input(format!(
                    "input '{name}' dim {i} is {actual}, which does not fit {} (shape {:?})",
                    dim.display(&g.symbols),
                    t.shape()
                )));
            }
        }
    }
    Ok(())
}

/// Evaluates one op on concrete inputs (absent optional inputs as `None`).
/// Returns every output the op defines (e.g. LSTM's Y, Y_h and Y_c). Used by
/// [`run`] and by constant folding.
pub fn eval_op(op: &Op, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, String> {
    let args = Args::new(op, inputs)?;
    use Op::*;
    let single = match op {
        Abs | Neg | Sqrt | Reciprocal | Exp | Log | Erf | Tanh | Sigmoid | Relu | Softplus
        | Softsign | Floor | Ceil | Round | Sign | Sin | Cos | Tan | Asin | Acos | Atan | Sinh
        | Cosh | Asinh | Acosh | Atanh | HardSwish | Mish | Not | BitwiseNot | IsNaN | IsInf(_)
        | HardSigmoid(_) | LeakyRelu(_) | Elu(_) | Celu(_) | ThresholdedRelu(_) | Selu(_)
        | Gelu(_) | Shrink(_) | Swish(_) => elementwise::unary(op, args.get(0)?),
        Identity => Ok(args.get(0)?.clone()),
        Add | Sub | Mul | Div | Pow | Mod(_) | PRelu | Equal | Less | LessOrEqual | Greater
        | GreaterOrEqual | And | Or | Xor | BitwiseAnd | BitwiseOr | BitwiseXor | BitShift(_) => {
            broadcast::binary(op, args.get(0)?, args.get(1)?)
        }
        Min | Max | Sum | Mean => broadcast::variadic(op, &args.all()?),
        Where => broadcast::select(args.get(0)?, args.get(1)?, args.get(2)?),
        Clip => elementwise::clip(args.get(0)?, args.opt(1), args.opt(2)),
        Cast(a) => misc::cast(args.get(0)?, a.to),
        CastLike(a) => {
            let target = args.get(1)?.dtype();
            let to = if numeric::held_dtype(a.to) == target {
                a.to
            } else {
                target
            };
            misc::cast(args.get(0)?, to)
        }
        MatMul => matmul::matmul(args.get(0)?, args.get(1)?),
        Gemm(a) => matmul::gemm(a, args.get(0)?, args.get(1)?, args.opt(2)),
        Linear(a) => matmul::linear(args.get(0)?, args.get(1)?, args.opt(2))
            .and_then(|y| elementwise::fused_activation(a.activation, y)),
        MatMulInteger => quant::matmul_integer(&args),
        Einsum(a) => misc::einsum(&a.equation, &args.all()?),
        Conv(a) => {
            conv::conv(a, &args).and_then(|y| elementwise::fused_activation(a.activation, y))
        }
        ConvTranspose(a) => conv::conv_transpose(a, &args)
            .and_then(|y| elementwise::fused_activation(a.activation, y)),
        BatchNormalization(a) => norm::batch_norm(a.epsilon, &args),
        InstanceNormalization(a) => norm::instance_norm(a.epsilon, &args),
        LayerNormalization(a) => norm::layer_norm(a, &args),
        RmsNormalization(a) => norm::rms_norm(a, &args),
        Attention(a) => attention::attention(a, &args),
        GroupNormalization(a) => norm::group_norm(a, &args),
        LpNormalization(a) => norm::lp_norm(a, args.get(0)?),
        MeanVarianceNormalization(a) => norm::mean_variance_norm(&a.axes, args.get(0)?),
        MaxPool(a) | AveragePool(a) => pool::pool(op, a, args.get(0)?),
        LpPool(a) => pool::lp_pool(a, args.get(0)?),
        GlobalAveragePool | GlobalMaxPool => pool::global_pool(op, args.get(0)?),
        Softmax(a) | LogSoftmax(a) | Hardmax(a) => softmax::softmax(op, a, args.get(0)?),
        ReduceMean(a) | ReduceSum(a) | ReduceMax(a) | ReduceMin(a) | ReduceProd(a)
        | ReduceL1(a) | ReduceL2(a) | ReduceLogSum(a) | ReduceLogSumExp(a) | ReduceSumSquare(a) => {
            reduce::reduce(op, a, &args)
        }
        ArgMax(a) | ArgMin(a) => reduce::arg_reduce(op, a, args.get(0)?),
        Reshape(a) => shape_ops::reshape(a, &args),
        Flatten(a) => shape_ops::flatten(a.axis, args.get(0)?),
        Transpose(a) => shape_ops::transpose(a, args.get(0)?),
        Squeeze => shape_ops::squeeze(&args),
        Unsqueeze => shape_ops::unsqueeze(&args),
        Concat(a) => shape_ops::concat(a.axis, &args.all()?),
        Split(a) => return shape_ops::split(a, &args),
        Slice => shape_ops::slice(&args),
        Gather(a) => gather_scatter::gather(a.axis, args.get(0)?, args.get(1)?),
        GatherElements(a) => gather_scatter::gather_elements(a.axis, args.get(0)?, args.get(1)?),
        GatherNd(a) => gather_scatter::gather_nd(a.batch_dims, args.get(0)?, args.get(1)?),
        ScatterNd(a) => gather_scatter::scatter_nd(a.reduction, &args),
        ScatterElements(a) => gather_scatter::scatter_elements(a, &args),
        Expand => shape_ops::expand(&args),
        Tile => shape_ops::tile(&args),
        Pad(a) => shape_ops::pad(a.mode, &args),
        Resize(a) => resize::resize(a, &args),
        Shape(a) => shape_ops::shape(a, args.get(0)?),
        Size => Ok(Tensor::scalar_i64(args.get(0)?.len() as i64)),
        ConstantOfShape(a) => shape_ops::constant_of_shape(a, &args),
        Range => shape_ops::range(&args),
        TopK(a) => return misc::top_k(a, &args),
        CumSum(a) => misc::cum_sum(a, &args),
        DepthToSpace(a) => shape_ops::depth_to_space(a, args.get(0)?),
        SpaceToDepth(a) => shape_ops::space_to_depth(a.blocksize, args.get(0)?),
        Trilu(a) => shape_ops::trilu(a.upper, &args),
        OneHot(a) => misc::one_hot(a.axis, &args),
        NonZero => misc::non_zero(args.get(0)?),
        EyeLike(a) => shape_ops::eye_like(a, args.get(0)?),
        Compress(a) => misc::compress(a.axis, &args),
        QuantizeLinear(a) => quant::quantize(a, &args),
        DequantizeLinear(a) => quant::dequantize(a, &args),
        Lstm(a) => return rnn::lstm(a, &args),
        Gru(a) => return rnn::gru(a, &args),
        Custom(c) => Err(format!(
            "custom op {}::{} cannot be evaluated",
            c.domain, c.name
        )),
    }?;
    Ok(vec![single])
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::ir::text::parse;

    const MLP: &str = r#"graph mlp {
  input x: f32[N,2]
  weight w: f32[2,2] = [1,2,3,4]
  weight b: f32[2] = [0.5,-100]
  node mm: h: f32[N,2] = MatMul (x, w)
  node add: y: f32[N,2] = Add (h, b)
  node act: z: f32[N,2] = Relu (y)
  output z, h
}
"#;

    fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    #[test]
    fn runs_a_graph_and_observes_every_node_output() {
        let g = parse(MLP).unwrap();
        let mut seen = Vec::new();
        let out = run_observed(&g, vec![f32s(&[1, 2], vec![1.0, 1.0])], &mut |v, _| {
            seen.push(g.value(v).name.clone())
        })
        .unwrap();
        assert_eq!(
            out,
            vec![f32s(&[1, 2], vec![4.5, 0.0]), f32s(&[1, 2], vec![4.0, 6.0])]
        );
        assert_eq!(seen, ["h", "y", "z"]);
    }

    #[test]
    fn inputs_are_checked_against_their_facts() {
        let g = parse(MLP).unwrap();
        let err = run(&g, vec![f32s(&[1, 3], vec![0.0; 3])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("input 'x' dim 1"), "{err}");
        let err = run(&g, vec![Tensor::scalar_i64(1)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("input 'x' must be f32"), "{err}");
        assert!(run(&g, vec![]).is_err());
    }

    #[test]
    fn op_failures_name_the_node() {
        let text = "graph g {\n  input x: f32[2]\n  input i: i64[1]\n  node pick: y: f32[1] = Gather {\"axis\":0} (x, i)\n  output y\n}\n";
        let g = parse(text).unwrap();
        let err = run(
            &g,
            vec![
                f32s(&[2], vec![1.0, 2.0]),
                Tensor::from_i64(&[1], vec![5]).unwrap(),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Node { node, .. } if node == "pick"),
            "{err}"
        );
    }

    #[test]
    fn every_custom_op_is_listed_in_one_error() {
        let text = "graph g {\n  input x: f32[2]\n  node k: y: ?[?] = Custom {\"domain\":\"x\",\"name\":\"K\",\"attrs\":{}} (x)\n  node j: z: ?[?] = Custom {\"domain\":\"x\",\"name\":\"J\",\"attrs\":{}} (y)\n  output z\n}\n";
        let g = parse(text).unwrap();
        let err = run(&g, vec![f32s(&[2], vec![1.0, 2.0])]).unwrap_err();
        let names: Vec<&str> = match &err {
            Error::Unsupported(u) => u.iter().map(|u| u.node.as_str()).collect(),
            _ => panic!("{err}"),
        };
        assert_eq!(names, ["k", "j"]);
    }

    fn ints(v: &[i64]) -> Tensor {
        Tensor::from_i64(&[v.len()], v.to_vec()).unwrap()
    }

    fn op(json: &str) -> Op {
        let (name, attrs) = json.split_once(' ').unwrap_or((json, ""));
        let attrs = (!attrs.is_empty()).then(|| serde_json::from_str(attrs).unwrap());
        Op::from_name_and_attrs(name, attrs).unwrap()
    }

    #[test]
    fn hostile_attributes_and_values_are_errors_not_panics() {
        let empty = f32s(&[0], vec![]);
        let x = f32s(&[1, 1, 2, 2], vec![1.0; 4]);
        let w = f32s(&[1, 1, 1, 1], vec![1.0]);
        let cases: Vec<(Op, Vec<Option<&Tensor>>)> = vec![
            (
                op(
                    "Conv {\"kernel_shape\":null,\"strides\":[1,1],\"dilations\":[18446744073709551615,1],\"padding\":{\"Explicit\":[]},\"group\":1}",
                ),
                vec![Some(&x), Some(&w)],
            ),
            (
                op(
                    "Conv {\"kernel_shape\":null,\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{\"Explicit\":[18446744073709551615,0,0,0]},\"group\":1}",
                ),
                vec![Some(&x), Some(&w)],
            ),
            (
                op("DepthToSpace {\"blocksize\":4294967296,\"mode\":\"Dcr\"}"),
                vec![Some(&x)],
            ),
            (
                op("ConstantOfShape {\"dtype\":\"f32\",\"value\":{\"Float\":0.0}}"),
                vec![],
            ),
            (op("Range"), vec![]),
        ];
        let huge_shape = ints(&[1 << 40, 1 << 40]);
        let (zero, big, one) = (
            Tensor::scalar_f32(0.0),
            Tensor::scalar_f32(1e30),
            Tensor::scalar_f32(1.0),
        );
        let mut cases = cases;
        cases[3].1 = vec![Some(&huge_shape)];
        cases[4].1 = vec![Some(&zero), Some(&big), Some(&one)];
        for (o, inputs) in &cases {
            assert!(eval_op(o, inputs).is_err(), "{o:?}");
        }
        let (starts, ends, steps) = (ints(&[-1]), ints(&[i64::MIN]), ints(&[-1]));
        let sliced = eval_op(
            &Op::Slice,
            &[Some(&empty), Some(&starts), Some(&ends), None, Some(&steps)],
        )
        .unwrap();
        assert_eq!(sliced[0].shape(), &[0]);
        let pads = ints(&[i64::MAX, i64::MAX]);
        assert!(
            eval_op(
                &op("Pad {\"mode\":\"Constant\"}"),
                &[Some(&empty), Some(&pads)]
            )
            .is_err()
        );
        let repeats = ints(&[i64::MAX]);
        let tiled = eval_op(&Op::Tile, &[Some(&empty), Some(&repeats)]).unwrap();
        assert_eq!(tiled[0].shape(), &[0]);
    }
}
