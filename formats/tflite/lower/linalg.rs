//! Lowering of the linalg family (see [`super::support::family`]): Linear,
//! MatMul, Gemm and two-operand Einsum as FULLY_CONNECTED (constant weights,
//! stored transposed as `[N, K]`) or BATCH_MATMUL (activations on both sides,
//! broadcasting batch dims), with ADD/MUL and activation ops where the
//! builtin has no place for a term.

use std::collections::BTreeMap;

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::ops::{FusedActivation, GemmAttrs};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::super::model::TensorId;
use super::super::schema as tfl;
use super::shape::{const_tensor, dtypes, fixed, input, reshape_tensor};
use super::{Layout, Lowerer, dims_i32, permute};

/// One op applied after the product: reads the first tensor, writes the second.
type Step = Box<dyn Fn(&mut Lowerer, TensorId, TensorId)>;

/// BATCH_MATMUL takes operands of rank 2 to 5.
const BMM_MAX_RANK: usize = 5;

pub fn support(g: &Graph, node: &Node) -> Support {
    match check(g, node) {
        Ok(()) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    check(lx.g, node).map_err(|why| lx.error(why))?;
    match &node.op {
        Op::Linear(a) => lower_linear(lx, node, a.activation),
        Op::MatMul => lower_matmul(lx, node),
        Op::Gemm(a) => lower_gemm(lx, node, a),
        Op::Einsum(_) => lower_einsum(lx, node),
        _ => Err(lx.error(format!("{} is not in the linalg family", node.op.name()))),
    }
}

fn check(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    let values: Vec<ValueId> = node
        .inputs
        .iter()
        .flatten()
        .chain(&node.outputs)
        .copied()
        .collect();
    // FULLY_CONNECTED and BATCH_MATMUL compute in float32 (other types only
    // as quantized tensors, which the quant family handles).
    dtypes(g, &values, &[DType::F32], node)?;
    if let Some(&v) = values.iter().find(|&&v| g.fact(v).quant.is_some()) {
        return Err(format!("value '{}' is quantized", g.value(v).name));
    }
    match &node.op {
        Op::Linear(_) => linear_plan(g, node).map(|_| ()),
        Op::MatMul => matmul_plan(g, node).map(|_| ()),
        Op::Gemm(a) => gemm_check(g, node, a),
        Op::Einsum(a) => einsum_plan(g, node, &a.equation).map(|_| ()),
        _ => Err(format!("{} is not in the linalg family", node.op.name())),
    }
}

// ---------------------------------------------------------------------------
// Shared pieces.

/// The fused-activation option FULLY_CONNECTED applies itself; the float
/// kernel only clamps, so Tanh (and the rest) need their own op.
fn fused_option(act: Option<FusedActivation>) -> tfl::ActivationFunctionType {
    match act {
        Some(FusedActivation::Relu) => tfl::ActivationFunctionType::RELU,
        Some(FusedActivation::Relu6) => tfl::ActivationFunctionType::RELU6,
        Some(FusedActivation::ReluN1To1) => tfl::ActivationFunctionType::RELU_N1_TO_1,
        _ => tfl::ActivationFunctionType::NONE,
    }
}

/// The op applying `act` on its own (when it cannot be fused).
fn activation_op(act: FusedActivation) -> tfl::BuiltinOperator {
    match act {
        FusedActivation::Relu => tfl::BuiltinOperator::RELU,
        FusedActivation::Relu6 => tfl::BuiltinOperator::RELU6,
        FusedActivation::ReluN1To1 => tfl::BuiltinOperator::RELU_N1_TO_1,
        FusedActivation::Tanh => tfl::BuiltinOperator::TANH,
        FusedActivation::Sigmoid => tfl::BuiltinOperator::LOGISTIC,
        FusedActivation::HardSwish => tfl::BuiltinOperator::HARD_SWISH,
    }
}

/// A new float tensor shaped like `t`.
fn like(lx: &mut Lowerer, t: TensorId, name: &str) -> TensorId {
    let shape = lx.model.tensor(t).shape.clone();
    lx.temp(name, tfl::TensorType::FLOAT32, shape)
}

/// FULLY_CONNECTED of `x` (`[..., K]`) by `weights` (`[N, K]`) into `out`,
/// keeping the leading dims.
fn fully_connected(
    lx: &mut Lowerer,
    x: TensorId,
    weights: TensorId,
    bias: Option<TensorId>,
    act: tfl::ActivationFunctionType,
    out: TensorId,
) {
    let keep_num_dims = lx.model.tensor(x).shape.len() != 2;
    lx.op(
        tfl::BuiltinOperator::FULLY_CONNECTED,
        vec![Some(x), Some(weights), bias],
        vec![out],
        tfl::BuiltinOptionsT::FullyConnectedOptions(Box::new(tfl::FullyConnectedOptionsT {
            fused_activation_function: act,
            keep_num_dims,
            ..Default::default()
        })),
    );
}

fn batch_matmul(lx: &mut Lowerer, a: TensorId, b: TensorId, out: TensorId) {
    lx.op(
        tfl::BuiltinOperator::BATCH_MATMUL,
        vec![Some(a), Some(b)],
        vec![out],
        tfl::BuiltinOptionsT::BatchMatMulOptions(Box::default()),
    );
}

fn binary(lx: &mut Lowerer, code: tfl::BuiltinOperator, a: TensorId, b: TensorId, out: TensorId) {
    let options = match code {
        tfl::BuiltinOperator::ADD => tfl::BuiltinOptionsT::AddOptions(Box::default()),
        _ => tfl::BuiltinOptionsT::MulOptions(Box::default()),
    };
    lx.op(code, vec![Some(a), Some(b)], vec![out], options);
}

/// The shape the matrix product of `a` and `b` (rank >= 2 each) has:
/// broadcast batch dims, then `[M, N]`.
fn matmul_shape(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let (ra, rb) = (a.len(), b.len());
    if a[ra - 1] != b[rb - 2] {
        return Err(format!("inner dims of {a:?} and {b:?} differ"));
    }
    let batch = ra.max(rb) - 2;
    let pad = |s: &[usize]| -> Vec<usize> {
        let own = &s[..s.len() - 2];
        let mut p = vec![1; batch - own.len()];
        p.extend_from_slice(own);
        p
    };
    let mut out = Vec::new();
    for (da, db) in pad(a).into_iter().zip(pad(b)) {
        if da != db && da != 1 && db != 1 {
            return Err(format!("batch dims of {a:?} and {b:?} do not broadcast"));
        }
        out.push(da.max(db));
    }
    out.push(a[ra - 2]);
    out.push(b[rb - 1]);
    Ok(out)
}

/// The float32 contents of a constant, transposed from `[K, N]` to `[N, K]`
/// and scaled.
fn fc_weights(
    lx: &mut Lowerer,
    w: &Tensor,
    transpose: bool,
    scale: f32,
    name: &str,
) -> Result<TensorId> {
    let mut data = if transpose {
        permute(w, &[1, 0]).map_err(|e| lx.error(e))?
    } else {
        w.clone()
    };
    if scale != 1.0 {
        data = Tensor::F32(data.to_f32().mapv(|v| v * scale));
    }
    lx.const_tensor(name, &data)
}

// ---------------------------------------------------------------------------
// Linear.

struct LinearPlan {
    /// The weight is a constant: FULLY_CONNECTED; else BATCH_MATMUL + ADD.
    constant: bool,
}

fn linear_plan(g: &Graph, node: &Node) -> std::result::Result<LinearPlan, String> {
    let x = fixed(g, input(node, 0)?)?;
    let w = fixed(g, input(node, 1)?)?;
    let [k, n] = w[..] else {
        return Err(format!("Linear weight {w:?} is not 2-D"));
    };
    if x.last() != Some(&k) {
        return Err(format!("Linear input {x:?} does not end in {k}"));
    }
    if let Some(b) = node.input(2)
        && fixed(g, b)?.iter().product::<usize>() != n
    {
        return Err(format!("Linear bias does not have {n} elements"));
    }
    let mut out = x.clone();
    *out.last_mut().expect("x ends in k") = n;
    if fixed(g, node.outputs[0])? != out {
        return Err(format!("Linear output is not {out:?}"));
    }
    let constant = g.weight_of(input(node, 1)?).is_some();
    if !constant && !(1..=BMM_MAX_RANK).contains(&x.len()) {
        return Err(format!(
            "Linear with a computed weight on rank {} (BATCH_MATMUL takes up to {BMM_MAX_RANK})",
            x.len()
        ));
    }
    Ok(LinearPlan { constant })
}

fn lower_linear(lx: &mut Lowerer, node: &Node, act: Option<FusedActivation>) -> Result<()> {
    let plan = linear_plan(lx.g, node).map_err(|e| lx.error(e))?;
    let (x, w) = (lx.input(node, 0)?, lx.input(node, 1)?);
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let xt = lx.operand(x, Layout::Source)?;
    let n = lx.shape(w)?[1];
    let bias = match node.input(2) {
        None => None,
        Some(b) => {
            let t = lx.operand(b, Layout::Source)?;
            Some(if lx.model.tensor(t).shape != [n as i32] {
                reshape_tensor(lx, t, &[n], &format!("{name}_bias"))
            } else {
                t
            })
        }
    };
    if plan.constant {
        let data = lx.constant(w)?.expect("checked constant");
        let wname = format!("{}_nk", lx.g.value(w).name);
        let weights = fc_weights(lx, &data, true, 1.0, &wname)?;
        let fused = fused_option(act);
        let separate = act.filter(|_| fused == tfl::ActivationFunctionType::NONE);
        let target = match separate {
            None => lx.define(out, Layout::Source)?,
            Some(_) => {
                let shape = dims_i32(&lx.shape(out)?);
                lx.temp(&format!("{name}_linear"), tfl::TensorType::FLOAT32, shape)
            }
        };
        fully_connected(lx, xt, weights, bias, fused, target);
        if let Some(a) = separate {
            let t = lx.define(out, Layout::Source)?;
            lx.op(
                activation_op(a),
                vec![Some(target)],
                vec![t],
                tfl::BuiltinOptionsT::NONE,
            );
        }
        return Ok(());
    }
    // A computed weight (e.g. dequantized at run time): x @ W as stored.
    let wt = lx.operand(w, Layout::Source)?;
    let x_shape = lx.shape(x)?;
    let a = if x_shape.len() == 1 {
        reshape_tensor(lx, xt, &[1, x_shape[0]], &format!("{name}_row"))
    } else {
        xt
    };
    let mut steps: Vec<Step> = Vec::new();
    if let Some(b) = bias {
        steps.push(Box::new(move |lx, t, o| {
            binary(lx, tfl::BuiltinOperator::ADD, t, b, o)
        }));
    }
    if let Some(act) = act {
        steps.push(Box::new(move |lx, t, o| {
            lx.op(
                activation_op(act),
                vec![Some(t)],
                vec![o],
                tfl::BuiltinOptionsT::NONE,
            )
        }));
    }
    // The only step changing the shape comes last and writes the output.
    if x_shape.len() == 1 {
        steps.push(Box::new(super::shape::reshape_into));
    }
    let mut shape = lx.model.tensor(a).shape.clone();
    *shape.last_mut().expect("rank >= 2") = n as i32;
    let mm = if steps.is_empty() {
        lx.define(out, Layout::Source)?
    } else {
        lx.temp(&format!("{name}_matmul"), tfl::TensorType::FLOAT32, shape)
    };
    batch_matmul(lx, a, wt, mm);
    chain(lx, mm, out, steps)
}

/// Runs `steps` one after the other from `t`, the last one writing `out`'s
/// tensor (each intermediate keeps the shape of its input, except a step
/// writing `out` takes `out`'s).
fn chain(lx: &mut Lowerer, mut t: TensorId, out: ValueId, steps: Vec<Step>) -> Result<()> {
    let count = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        let next = if i + 1 == count {
            lx.define(out, Layout::Source)?
        } else {
            let name = format!("{}_{i}", lx.model.tensor(t).name);
            like(lx, t, &name)
        };
        step(lx, t, next);
        t = next;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// MatMul.

struct MatMulPlan {
    /// `A` and `B` as matrices (rank-1 operands given a 1-dim).
    a: Vec<usize>,
    b: Vec<usize>,
    /// The product's shape before the final reshape to the output.
    product: Vec<usize>,
    /// `B` is a constant whose product fits FULLY_CONNECTED.
    fc: bool,
}

fn matmul_plan(g: &Graph, node: &Node) -> std::result::Result<MatMulPlan, String> {
    let a0 = fixed(g, input(node, 0)?)?;
    let b0 = fixed(g, input(node, 1)?)?;
    if a0.is_empty() || b0.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a = if a0.len() == 1 {
        vec![1, a0[0]]
    } else {
        a0.clone()
    };
    let b = if b0.len() == 1 {
        vec![b0[0], 1]
    } else {
        b0.clone()
    };
    let product = matmul_shape(&a, &b)?;
    let out = fixed(g, node.outputs[0])?;
    if product.iter().product::<usize>() != out.iter().product::<usize>() {
        return Err(format!(
            "MatMul gives {product:?} but the output is {out:?}"
        ));
    }
    // A constant B whose batch dims are all 1 and no wider than A's acts as
    // one [K, N] matrix for every row of A.
    let fc = g.weight_of(input(node, 1)?).is_some()
        && b[..b.len() - 2].iter().all(|&d| d == 1)
        && b.len() <= a.len();
    if !fc && (a.len() > BMM_MAX_RANK || b.len() > BMM_MAX_RANK) {
        return Err(format!(
            "MatMul of ranks {} and {}: BATCH_MATMUL takes up to {BMM_MAX_RANK}",
            a.len(),
            b.len()
        ));
    }
    Ok(MatMulPlan { a, b, product, fc })
}

fn lower_matmul(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let plan = matmul_plan(lx.g, node).map_err(|e| lx.error(e))?;
    let (a, b) = (lx.input(node, 0)?, lx.input(node, 1)?);
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let out_shape = lx.shape(out)?;
    let mut at = lx.operand(a, Layout::Source)?;
    if lx.shape(a)? != plan.a {
        at = reshape_tensor(lx, at, &plan.a, &format!("{name}_a"));
    }
    let direct = plan.product == out_shape;
    let target = if direct {
        lx.define(out, Layout::Source)?
    } else {
        lx.temp(
            &format!("{name}_product"),
            tfl::TensorType::FLOAT32,
            dims_i32(&plan.product),
        )
    };
    if plan.fc {
        let data = lx.constant(b)?.expect("checked constant");
        let (k, n) = (plan.b[plan.b.len() - 2], plan.b[plan.b.len() - 1]);
        let data = super::reshape(&data, &[k, n]).map_err(|e| lx.error(e))?;
        let wname = format!("{}_nk", lx.g.value(b).name);
        let weights = fc_weights(lx, &data, true, 1.0, &wname)?;
        fully_connected(
            lx,
            at,
            weights,
            None,
            tfl::ActivationFunctionType::NONE,
            target,
        );
    } else {
        let mut bt = lx.operand(b, Layout::Source)?;
        if lx.shape(b)? != plan.b {
            bt = reshape_tensor(lx, bt, &plan.b, &format!("{name}_b"));
        }
        batch_matmul(lx, at, bt, target);
    }
    if !direct {
        let t = lx.define(out, Layout::Source)?;
        super::shape::reshape_into(lx, target, t);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Gemm.

fn gemm_check(g: &Graph, node: &Node, a: &GemmAttrs) -> std::result::Result<(), String> {
    let sa = fixed(g, input(node, 0)?)?;
    let sb = fixed(g, input(node, 1)?)?;
    if sa.len() != 2 || sb.len() != 2 {
        return Err("Gemm operands must be 2-D".into());
    }
    let (m, k) = if a.trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let (k2, n) = if a.trans_b {
        (sb[1], sb[0])
    } else {
        (sb[0], sb[1])
    };
    if k != k2 {
        return Err(format!("Gemm inner dims {k} and {k2} differ"));
    }
    if fixed(g, node.outputs[0])? != [m, n] {
        return Err(format!("Gemm output is not [{m}, {n}]"));
    }
    if let Some(c) = node.input(2) {
        let sc = fixed(g, c)?;
        let fits = sc.len() <= 2
            && sc
                .iter()
                .rev()
                .zip([n, m])
                .all(|(&d, want)| d == 1 || d == want);
        if !fits {
            return Err(format!("Gemm C {sc:?} does not broadcast to [{m}, {n}]"));
        }
    }
    Ok(())
}

/// Gemm: `alpha * A' B' + beta * C`. A constant B becomes FULLY_CONNECTED
/// weights with alpha folded in (and C its bias when C is a constant row);
/// otherwise BATCH_MATMUL, MUL by alpha, ADD of beta * C.
fn lower_gemm(lx: &mut Lowerer, node: &Node, attrs: &GemmAttrs) -> Result<()> {
    let (a, b) = (lx.input(node, 0)?, lx.input(node, 1)?);
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let out_shape = lx.shape(out)?;
    let (m, n) = (out_shape[0], out_shape[1]);
    let mut at = lx.operand(a, Layout::Source)?;
    if attrs.trans_a {
        at = lx.transpose(at, &[1, 0], &format!("{name}_at"))?;
    }
    let c = node.input(2).filter(|_| attrs.beta != 0.0);
    let c_const = match c {
        Some(c) => const_tensor(lx.g, c).map_err(|e| lx.error(e))?,
        None => None,
    };
    // Terms still to apply after the product, in order.
    let mut bias = None;
    let mut add: Option<TensorId> = None;
    if let Some(cv) = &c_const {
        let scaled: Vec<f32> = cv.to_f32().iter().map(|&v| v * attrs.beta).collect();
        let row = cv.shape().iter().rev().skip(1).all(|&d| d == 1);
        if row && (scaled.len() == 1 || scaled.len() == n) {
            let values = if scaled.len() == n {
                scaled
            } else {
                vec![scaled[0]; n]
            };
            let t = Tensor::F32(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), values)
                    .map_err(|e| lx.error(e.to_string()))?,
            );
            bias = Some(lx.const_tensor(&format!("{name}_bias"), &t)?);
        } else {
            let t = Tensor::F32(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(cv.shape()), scaled)
                    .map_err(|e| lx.error(e.to_string()))?,
            );
            add = Some(lx.const_tensor(&format!("{name}_c"), &t)?);
        }
    } else if let Some(c) = c {
        let ct = lx.operand(c, Layout::Source)?;
        add = Some(if attrs.beta != 1.0 {
            let beta = lx.const_f32_scalar(&format!("{name}_beta"), attrs.beta);
            let scaled = like(lx, ct, &format!("{name}_c_scaled"));
            binary(lx, tfl::BuiltinOperator::MUL, ct, beta, scaled);
            scaled
        } else {
            ct
        });
    }
    let product_shape = dims_i32(&[m, n]);
    if let Some(bv) = lx.constant(b)? {
        let wname = format!("{}_nk", lx.g.value(b).name);
        let weights = fc_weights(lx, &bv, !attrs.trans_b, attrs.alpha, &wname)?;
        let target = if add.is_none() {
            lx.define(out, Layout::Source)?
        } else {
            lx.temp(
                &format!("{name}_fc"),
                tfl::TensorType::FLOAT32,
                product_shape,
            )
        };
        fully_connected(
            lx,
            at,
            weights,
            bias,
            tfl::ActivationFunctionType::NONE,
            target,
        );
        if let Some(c) = add {
            let t = lx.define(out, Layout::Source)?;
            binary(lx, tfl::BuiltinOperator::ADD, target, c, t);
        }
        return Ok(());
    }
    let mut bt = lx.operand(b, Layout::Source)?;
    if attrs.trans_b {
        bt = lx.transpose(bt, &[1, 0], &format!("{name}_bt"))?;
    }
    // A row C goes in as an ADD here too (`bias` and `add` are exclusive).
    let add = add.or(bias);
    let mut steps: Vec<Step> = Vec::new();
    if attrs.alpha != 1.0 {
        let alpha = lx.const_f32_scalar(&format!("{name}_alpha"), attrs.alpha);
        steps.push(Box::new(move |lx, t, o| {
            binary(lx, tfl::BuiltinOperator::MUL, t, alpha, o)
        }));
    }
    if let Some(c) = add {
        steps.push(Box::new(move |lx, t, o| {
            binary(lx, tfl::BuiltinOperator::ADD, t, c, o)
        }));
    }
    let mm = if steps.is_empty() {
        lx.define(out, Layout::Source)?
    } else {
        lx.temp(
            &format!("{name}_matmul"),
            tfl::TensorType::FLOAT32,
            product_shape,
        )
    };
    batch_matmul(lx, at, bt, mm);
    chain(lx, mm, out, steps)
}

// ---------------------------------------------------------------------------
// Einsum.

/// A two-operand einsum as one matrix product: both operands transposed to
/// `[batch..., rows, contracted]` and `[batch..., contracted, cols]`.
#[derive(Debug)]
struct EinsumPlan {
    /// Single-operand equations: the output is this transpose of the input.
    transpose: Option<Vec<usize>>,
    a_perm: Vec<usize>,
    b_perm: Vec<usize>,
    /// Letters of each group, in the order the product uses.
    batch: Vec<char>,
    rows: Vec<char>,
    cols: Vec<char>,
    contracted: Vec<char>,
    /// The output's letters.
    out: Vec<char>,
    dims: BTreeMap<char, usize>,
}

/// Each operand's letters with `...` expanded to fresh uppercase-free
/// placeholders (aligned from the right, as numpy does).
fn expand_ellipsis(
    term: &str,
    rank: usize,
    fresh: &[char],
) -> std::result::Result<Vec<char>, String> {
    let letters: Vec<char> = term.chars().filter(|c| !c.is_whitespace()).collect();
    let text: String = letters.iter().collect();
    match text.find("...") {
        None => Ok(letters),
        Some(at) => {
            let before: Vec<char> = text[..at].chars().collect();
            let after: Vec<char> = text[at + 3..].chars().collect();
            let named = before.len() + after.len();
            if rank < named {
                return Err(format!(
                    "einsum term {term} has more letters than rank {rank}"
                ));
            }
            let k = rank - named;
            if k > fresh.len() {
                return Err("einsum ellipsis covers too many dims".into());
            }
            let mut out = before;
            out.extend_from_slice(&fresh[fresh.len() - k..]);
            out.extend(after);
            Ok(out)
        }
    }
}

fn einsum_plan(g: &Graph, node: &Node, equation: &str) -> std::result::Result<EinsumPlan, String> {
    let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
    let shapes: Vec<Vec<usize>> = inputs
        .iter()
        .map(|&v| fixed(g, v))
        .collect::<std::result::Result<_, _>>()?;
    let out_shape = fixed(g, node.outputs[0])?;
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() || !(1..=2).contains(&terms.len()) {
        return Err(format!(
            "einsum '{equation}': only one- and two-operand equations lower to TFLite"
        ));
    }
    // Placeholders for ellipsis dims: characters no equation uses.
    let fresh: Vec<char> = ('\u{100}'..'\u{110}').collect();
    let mut ops = Vec::new();
    let mut ellipsis_dims = 0;
    for (t, s) in terms.iter().zip(&shapes) {
        let letters = expand_ellipsis(t, s.len(), &fresh)?;
        if letters.len() != s.len() {
            return Err(format!("einsum term '{t}' does not match rank {}", s.len()));
        }
        if letters
            .iter()
            .any(|c| !(c.is_ascii_alphabetic() || fresh.contains(c)))
        {
            return Err(format!(
                "einsum term '{t}' has characters other than letters"
            ));
        }
        ellipsis_dims = ellipsis_dims.max(letters.iter().filter(|c| fresh.contains(c)).count());
        ops.push(letters);
    }
    let mut dims: BTreeMap<char, usize> = BTreeMap::new();
    for (letters, s) in ops.iter().zip(&shapes) {
        let mut seen = Vec::new();
        for (&c, &d) in letters.iter().zip(s) {
            if seen.contains(&c) {
                return Err(format!(
                    "einsum '{equation}' repeats a letter in one operand (a diagonal)"
                ));
            }
            seen.push(c);
            let e = dims.entry(c).or_insert(d);
            if *e == 1 {
                *e = d;
            } else if d != 1 && d != *e {
                return Err(format!("einsum '{equation}': dim {c} is {d} and {e}"));
            }
        }
    }
    let count = |c: char| ops.iter().filter(|o| o.contains(&c)).count();
    let out: Vec<char> = match rhs {
        Some(r) => {
            let named = r
                .replace("...", "")
                .chars()
                .filter(|c| !c.is_whitespace())
                .count();
            let rank = named + if r.contains("...") { ellipsis_dims } else { 0 };
            expand_ellipsis(r, rank, &fresh)?
        }
        None => {
            let mut ell: Vec<char> = fresh
                .iter()
                .copied()
                .filter(|c| dims.contains_key(c))
                .collect();
            let mut once: Vec<char> = dims
                .keys()
                .copied()
                .filter(|c| !fresh.contains(c) && count(*c) == 1)
                .collect();
            once.sort_unstable();
            ell.extend(once);
            ell
        }
    };
    let out_dims: Vec<usize> = out
        .iter()
        .map(|c| {
            dims.get(c)
                .copied()
                .ok_or_else(|| format!("einsum output letter {c} is in no operand"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if out_dims != out_shape {
        return Err(format!(
            "einsum '{equation}' gives {out_dims:?}, the output is {out_shape:?}"
        ));
    }
    let mut plan = EinsumPlan {
        transpose: None,
        a_perm: Vec::new(),
        b_perm: Vec::new(),
        batch: Vec::new(),
        rows: Vec::new(),
        cols: Vec::new(),
        contracted: Vec::new(),
        out: out.clone(),
        dims,
    };
    if ops.len() == 1 {
        let a = &ops[0];
        if out.len() != a.len() {
            return Err(format!(
                "einsum '{equation}' sums or takes a diagonal; only transposes lower"
            ));
        }
        plan.transpose = Some(
            out.iter()
                .map(|c| {
                    a.iter()
                        .position(|x| x == c)
                        .expect("letter of the operand")
                })
                .collect(),
        );
        return Ok(plan);
    }
    let (a, b) = (&ops[0], &ops[1]);
    for &c in a.iter().chain(b.iter()) {
        let (in_a, in_b, in_out) = (a.contains(&c), b.contains(&c), out.contains(&c));
        let group = match (in_a, in_b, in_out) {
            (true, true, true) => &mut plan.batch,
            (true, true, false) => &mut plan.contracted,
            (true, false, true) => &mut plan.rows,
            (false, true, true) => &mut plan.cols,
            _ => {
                return Err(format!(
                    "einsum '{equation}' sums dim {c} of one operand only; not lowered"
                ));
            }
        };
        if !group.contains(&c) {
            group.push(c);
        }
    }
    // Broadcast batch dims are fine for BATCH_MATMUL, but every other group
    // must have the full size in its operand.
    for (letters, s) in ops.iter().zip(&shapes) {
        for (c, &d) in letters.iter().zip(s) {
            if !plan.batch.contains(c) && d != plan.dims[c] {
                return Err(format!(
                    "einsum '{equation}' broadcasts dim {c} outside the batch"
                ));
            }
        }
    }
    if plan.batch.len() + 2 > BMM_MAX_RANK {
        let merged_ok = plan.batch.iter().all(|c| {
            ops.iter()
                .zip(&shapes)
                .all(|(o, s)| s[o.iter().position(|x| x == c).unwrap()] == plan.dims[c])
        });
        if !merged_ok {
            return Err(format!(
                "einsum '{equation}' has {} broadcast batch dims; BATCH_MATMUL takes 3",
                plan.batch.len()
            ));
        }
    }
    let order = |letters: &[char], groups: [&[char]; 3]| -> Vec<usize> {
        groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|c| {
                letters
                    .iter()
                    .position(|x| x == c)
                    .expect("letter of the operand")
            })
            .collect()
    };
    plan.a_perm = order(a, [&plan.batch, &plan.rows, &plan.contracted]);
    plan.b_perm = order(b, [&plan.batch, &plan.contracted, &plan.cols]);
    Ok(plan)
}

fn lower_einsum(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let Op::Einsum(attrs) = &node.op else {
        return Err(lx.error("not an Einsum"));
    };
    let plan = einsum_plan(lx.g, node, &attrs.equation).map_err(|e| lx.error(e))?;
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let a = lx.input(node, 0)?;
    let at = lx.operand(a, Layout::Source)?;
    if let Some(perm) = &plan.transpose {
        let t = lx.transpose(at, perm, &name)?;
        lx.alias(out, t, Layout::Source);
        return Ok(());
    }
    let b = lx.input(node, 1)?;
    let bt = lx.operand(b, Layout::Source)?;
    let size = |cs: &[char]| cs.iter().map(|c| plan.dims[c]).product::<usize>();
    let (m, k, n) = (size(&plan.rows), size(&plan.contracted), size(&plan.cols));
    let a_shape = lx.shape(a)?;
    let b_shape = lx.shape(b)?;
    // Batch dims as each operand has them (1 where it broadcasts).
    let batch_of = |shape: &[usize], perm: &[usize]| -> Vec<usize> {
        perm[..plan.batch.len()].iter().map(|&i| shape[i]).collect()
    };
    let mut ab = batch_of(&a_shape, &plan.a_perm);
    let mut bb = batch_of(&b_shape, &plan.b_perm);
    if plan.batch.len() + 2 > BMM_MAX_RANK {
        ab = vec![ab.iter().product()];
        bb = vec![bb.iter().product()];
    }
    let at = lx.transpose(at, &plan.a_perm, &format!("{name}_a"))?;
    let bt = lx.transpose(bt, &plan.b_perm, &format!("{name}_b"))?;
    let mut a_mat = ab.clone();
    a_mat.extend([m, k]);
    let mut b_mat = bb.clone();
    b_mat.extend([k, n]);
    let at = reshape_if(lx, at, &a_mat, &format!("{name}_a_mat"));
    let product_batch: Vec<usize> = ab.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
    let mut product = product_batch.clone();
    product.extend([m, n]);
    let mm = lx.temp(
        &format!("{name}_product"),
        tfl::TensorType::FLOAT32,
        dims_i32(&product),
    );
    let b_is_const = lx.is_constant(b);
    if b_is_const && plan.batch.is_empty() {
        // A constant right operand without batch dims: FULLY_CONNECTED.
        let data = lx.constant(b)?.expect("constant");
        let data = super::permute(&data, &plan.b_perm).map_err(|e| lx.error(e))?;
        let data = super::reshape(&data, &[k, n]).map_err(|e| lx.error(e))?;
        let weights = fc_weights(lx, &data, true, 1.0, &format!("{name}_nk"))?;
        fully_connected(lx, at, weights, None, tfl::ActivationFunctionType::NONE, mm);
    } else {
        let bt = reshape_if(lx, bt, &b_mat, &format!("{name}_b_mat"));
        batch_matmul(lx, at, bt, mm);
    }
    // Back to [batch..., rows..., cols...], then to the output's order.
    let mut letters: Vec<char> = plan.batch.clone();
    letters.extend(&plan.rows);
    letters.extend(&plan.cols);
    let grouped: Vec<usize> = letters.iter().map(|c| plan.dims[c]).collect();
    let grouped_t = reshape_if(lx, mm, &grouped, &format!("{name}_grouped"));
    let perm: Vec<usize> = plan
        .out
        .iter()
        .map(|c| letters.iter().position(|x| x == c).expect("output letter"))
        .collect();
    let t = lx.transpose(grouped_t, &perm, &name)?;
    lx.alias(out, t, Layout::Source);
    Ok(())
}

/// `t` reshaped to `shape` unless it already has it.
fn reshape_if(lx: &mut Lowerer, t: TensorId, shape: &[usize], name: &str) -> TensorId {
    if lx.model.tensor(t).shape == dims_i32(shape) {
        t
    } else {
        reshape_tensor(lx, t, shape, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::testing::{codes, lowered};
    use crate::formats::tflite::model::{TflModel, TflOperator};
    use crate::ir::text::parse;

    type Code = tfl::BuiltinOperator;

    fn op(m: &TflModel, code: Code) -> &TflOperator {
        m.operators.iter().find(|o| o.code == code).unwrap()
    }

    fn floats(m: &TflModel, t: Option<TensorId>) -> Vec<f32> {
        let data = m.tensor(t.unwrap()).data.as_ref().unwrap();
        data.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn fc_options(o: &TflOperator) -> &tfl::FullyConnectedOptionsT {
        match &o.options {
            tfl::BuiltinOptionsT::FullyConnectedOptions(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linear_is_fully_connected_with_transposed_weights_and_fused_relu() {
        let m = lowered(
            "graph g {
  input x: f32[1,4,2]
  weight w: f32[2,3] = [1,2,3,4,5,6]
  weight b: f32[3] = [0.5,0,-1]
  node l: y: f32[1,4,3] = Linear {\"activation\":\"Relu\"} (x, w, b)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::FULLY_CONNECTED]);
        let fc = &m.operators[0];
        assert_eq!(m.tensor(fc.inputs[1].unwrap()).shape, [3, 2]);
        assert_eq!(floats(&m, fc.inputs[1]), [1., 4., 2., 5., 3., 6.]);
        assert_eq!(floats(&m, fc.inputs[2]), [0.5, 0., -1.]);
        let o = fc_options(fc);
        assert!(o.keep_num_dims);
        assert_eq!(
            o.fused_activation_function,
            tfl::ActivationFunctionType::RELU
        );
    }

    #[test]
    fn tanh_and_sigmoid_are_their_own_ops_after_fully_connected() {
        for (act, code) in [("Tanh", Code::TANH), ("Sigmoid", Code::LOGISTIC)] {
            let m = lowered(&format!(
                "graph g {{
  input x: f32[2,2]
  weight w: f32[2,2] = [1,0,0,1]
  node l: y: f32[2,2] = Linear {{\"activation\":\"{act}\"}} (x, w, _)
  output y
}}"
            ));
            assert_eq!(codes(&m), [Code::FULLY_CONNECTED, code]);
            let o = fc_options(&m.operators[0]);
            assert_eq!(
                o.fused_activation_function,
                tfl::ActivationFunctionType::NONE
            );
            assert!(!o.keep_num_dims);
        }
    }

    #[test]
    fn linear_with_a_computed_weight_is_batch_matmul_and_add() {
        let m = lowered(
            "graph g {
  input x: f32[1,4,2]
  input w: f32[2,3]
  weight b: f32[3] = [0.5,0,-1]
  node l: y: f32[1,4,3] = Linear {} (x, w, b)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::BATCH_MATMUL, Code::ADD]);
    }

    #[test]
    fn matmul_of_activations_broadcasts_in_batch_matmul() {
        let m = lowered(
            "graph g {
  input a: f32[2,1,3,4]
  input b: f32[5,4,6]
  node mm: y: f32[2,5,3,6] = MatMul (a, b)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::BATCH_MATMUL]);
        let m = lowered(
            "graph g {
  input a: f32[4]
  input b: f32[3,4,6]
  node mm: y: f32[3,6] = MatMul (a, b)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [Code::RESHAPE, Code::BATCH_MATMUL, Code::RESHAPE]
        );
    }

    #[test]
    fn matmul_by_a_constant_matrix_is_fully_connected() {
        let m = lowered(
            "graph g {
  input a: f32[2,3,2]
  weight w: f32[1,2,2] = [1,2,3,4]
  node mm: y: f32[2,3,2] = MatMul (a, w)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::FULLY_CONNECTED]);
        assert_eq!(floats(&m, m.operators[0].inputs[1]), [1., 3., 2., 4.]);
    }

    #[test]
    fn gemm_folds_alpha_into_weights_and_beta_c_into_the_bias() {
        let m = lowered(
            "graph g {
  input a: f32[2,3]
  weight w: f32[2,2] = [1,2,3,4]
  weight c: f32[1] = [2]
  node gm: y: f32[3,2] = Gemm {\"alpha\":0.5,\"beta\":3,\"trans_a\":true,\"trans_b\":true} (a, w, c)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::TRANSPOSE, Code::FULLY_CONNECTED]);
        let fc = op(&m, Code::FULLY_CONNECTED);
        // transB: the weight already is [N, K].
        assert_eq!(floats(&m, fc.inputs[1]), [0.5, 1., 1.5, 2.]);
        assert_eq!(floats(&m, fc.inputs[2]), [6., 6.]);
    }

    #[test]
    fn gemm_of_activations_scales_and_adds_after_batch_matmul() {
        let m = lowered(
            "graph g {
  input a: f32[3,2]
  input b: f32[4,2]
  input c: f32[3,4]
  node gm: y: f32[3,4] = Gemm {\"alpha\":2,\"beta\":0.5,\"trans_a\":false,\"trans_b\":true} (a, b, c)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [
                Code::MUL,
                Code::TRANSPOSE,
                Code::BATCH_MATMUL,
                Code::MUL,
                Code::ADD
            ]
        );
    }

    #[test]
    fn einsum_attention_scores_transpose_the_keys() {
        let m = lowered(
            "graph g {
  input q: f32[1,2,3,4]
  input k: f32[1,2,5,4]
  node e: y: f32[1,2,3,5] = Einsum {\"equation\":\"bhid,bhjd->bhij\"} (q, k)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::TRANSPOSE, Code::BATCH_MATMUL]);
        let t = op(&m, Code::TRANSPOSE);
        assert_eq!(m.tensor(t.outputs[0]).shape, [1, 2, 4, 5]);
    }

    #[test]
    fn einsum_with_an_ellipsis_and_a_constant_operand() {
        let m = lowered(
            "graph g {
  input x: f32[2,3,4]
  weight w: f32[4,2] = [1,2,3,4,5,6,7,8]
  node e: y: f32[2,3,2] = Einsum {\"equation\":\"...k,kn->...n\"} (x, w)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [Code::RESHAPE, Code::FULLY_CONNECTED, Code::RESHAPE]
        );
    }

    #[test]
    fn einsum_sums_and_diagonals_are_refused() {
        let g = parse(
            "graph g {
  input a: f32[3,4]
  input b: f32[4,5]
  node e: y: f32[5] = Einsum {\"equation\":\"ij,jk->k\"} (a, b)
  output y
}",
        )
        .unwrap();
        let (id, _) = g.nodes().next().unwrap();
        let Support::Unsupported(why) = super::super::support(&g, id) else {
            panic!("supported")
        };
        assert!(why.contains("sums dim i"), "{why}");
    }
}
