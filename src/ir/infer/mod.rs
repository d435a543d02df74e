//! Shape and dtype inference for one op at a time.
//!
//! [`infer_op`] computes the output facts of an op from its input facts and,
//! where known, their constant values and symbolic integer values. Symbolic
//! values are how shapes computed inside the graph stay symbolic:
//! `Reshape(x, Concat(Shape(x)[0], [-1]))` on `x: [N,C,H,W]` gives
//! `[N, C*H*W]` with `N` still a symbol.
//!
//! Inference never panics and never invents a fixed number: what it cannot
//! determine becomes a fresh symbol, an unranked shape or an unknown dtype.
//! It fails only when the inputs contradict the op (fixed dims that cannot
//! broadcast, an axis out of range), with a message the caller locates.

mod broadcast;
mod graph;
mod layout;
mod linalg;
mod misc;
mod reduce;
mod sym;
mod window;

use super::dtype::DType;
use super::graph::Fact;
use super::ops::Op;
use super::shape::{Dim, Shape, Symbols, normalize_axis};
use super::tensor::Tensor;

pub use graph::infer_graph;
pub use sym::SymInt;

/// Integer tensors up to this many elements carry a symbolic value.
pub const MAX_SYM_LEN: usize = 64;

/// Ranks read from a value (the length of a shape tensor) above this are
/// not believed: the result is unranked instead of a huge dim list.
const MAX_RANK: usize = 64;

/// What is known about one input of an op.
#[derive(Clone, Debug)]
pub struct InferInput {
    pub fact: Fact,
    /// The constant value, when the input is a (small) constant.
    pub value: Option<Tensor>,
    /// The elements of a small 0-D/1-D integer tensor, when known: numbers or
    /// dim expressions (a `Shape` output, or arithmetic on one).
    pub sym: Option<Vec<SymInt>>,
}

impl InferInput {
    /// An input known only by its fact.
    pub fn from_fact(fact: Fact) -> InferInput {
        InferInput {
            fact,
            value: None,
            sym: None,
        }
    }

    /// A constant input; small integer constants also get a symbolic value.
    pub fn constant(value: Tensor) -> InferInput {
        let fact = Fact::new(value.dtype(), Shape::fixed(value.shape()));
        let sym = (value.dtype().is_integer() && value.shape().len() <= 1)
            .then(|| value.len() <= MAX_SYM_LEN)
            .filter(|small| *small)
            .and_then(|_| value.to_i64_vec().ok())
            .map(|v| v.into_iter().map(SymInt::Int).collect());
        InferInput {
            fact,
            value: Some(value),
            sym,
        }
    }
}

/// The inferred fact of one output, with its symbolic value when known.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    pub fact: Fact,
    pub sym: Option<Vec<SymInt>>,
}

impl Inferred {
    fn new(dtype: Option<DType>, shape: Shape) -> Inferred {
        Inferred {
            fact: Fact {
                dtype,
                shape,
                quant: None,
            },
            sym: None,
        }
    }

    fn with_sym(mut self, sym: Option<Vec<SymInt>>) -> Inferred {
        self.sym = sym;
        self
    }
}

/// The facts of the `n_outputs` outputs of `op` applied to `inputs` (`None`
/// for an absent optional input). New symbols are added to `symbols`.
pub fn infer_op(
    op: &Op,
    inputs: &[Option<InferInput>],
    n_outputs: usize,
    symbols: &mut Symbols,
) -> Result<Vec<Inferred>, String> {
    let mut cx = Cx {
        inputs,
        symbols,
        n_outputs,
    };
    let mut out = dispatch(op, &mut cx)?;
    out.truncate(n_outputs);
    while out.len() < n_outputs {
        out.push(Inferred::new(None, Shape::Unranked));
    }
    Ok(out)
}

fn dispatch(op: &Op, cx: &mut Cx) -> Result<Vec<Inferred>, String> {
    use Op::*;
    let one = |i: Inferred| Ok(vec![i]);
    match op {
        Abs
        | Neg
        | Sqrt
        | Reciprocal
        | Exp
        | Log
        | Erf
        | Tanh
        | Sigmoid
        | Relu
        | Softplus
        | Softsign
        | Floor
        | Ceil
        | Round
        | Sign
        | Sin
        | Cos
        | Tan
        | Asin
        | Acos
        | Atan
        | Sinh
        | Cosh
        | Asinh
        | Acosh
        | Atanh
        | HardSwish
        | Mish
        | BitwiseNot
        | HardSigmoid(_)
        | LeakyRelu(_)
        | Elu(_)
        | Celu(_)
        | ThresholdedRelu(_)
        | Selu(_)
        | Gelu(_)
        | Shrink(_)
        | Swish(_)
        | MeanVarianceNormalization(_)
        | BatchNormalization(_)
        | InstanceNormalization(_)
        | GroupNormalization(_)
        | CumSum(_)
        | Trilu(_)
        | PRelu => one(cx.same_as(0)?),
        Softmax(a) | LogSoftmax(a) | Hardmax(a) => one(cx.same_as_with_axis(a.axis)?),
        LpNormalization(a) => one(cx.same_as_with_axis(a.axis)?),
        LayerNormalization(a) | RmsNormalization(a) => one(cx.same_as_with_axis(a.axis)?),
        Attention(a) => one(linalg::attention(a, cx)?),
        Identity => {
            let x = cx.input(0)?;
            one(Inferred::new(x.fact.dtype, x.fact.shape.clone()).with_sym(x.sym.clone()))
        }
        Not | IsNaN | IsInf(_) => {
            let s = cx.input(0)?.fact.shape.clone();
            one(Inferred::new(Some(DType::Bool), s))
        }
        Add | Sub | Mul | Div => one(broadcast::arithmetic(op, cx)?),
        Pow | Mod(_) | BitwiseAnd | BitwiseOr | BitwiseXor | BitShift(_) | Min | Max | Sum
        | Mean => one(broadcast::elementwise(cx, 0, None)?),
        Equal | Less | LessOrEqual | Greater | GreaterOrEqual | And | Or | Xor => {
            one(broadcast::elementwise(cx, 0, Some(DType::Bool))?)
        }
        Where => one(broadcast::elementwise(cx, 1, None)?),
        Clip => one(cx.same_as(0)?),
        Cast(a) | CastLike(a) => {
            let x = cx.input(0)?;
            let sym = x.sym.clone().filter(|_| a.to.is_integer());
            one(Inferred::new(Some(a.to), x.fact.shape.clone()).with_sym(sym))
        }
        MatMul => one(linalg::matmul(cx, None)?),
        Linear(_) => one(linalg::linear(cx)?),
        MatMulInteger => one(linalg::matmul(cx, Some(DType::I32))?),
        Gemm(a) => one(linalg::gemm(a, cx)?),
        Einsum(a) => one(linalg::einsum(&a.equation, cx)?),
        Conv(a) => one(window::conv(a, cx)?),
        ConvTranspose(a) => one(window::conv_transpose(a, cx)?),
        MaxPool(a) | AveragePool(a) => one(window::pool(a, cx)?),
        LpPool(a) => one(window::pool(&a.pool, cx)?),
        GlobalAveragePool | GlobalMaxPool => one(window::global_pool(cx)?),
        ReduceMean(a) | ReduceSum(a) | ReduceMax(a) | ReduceMin(a) | ReduceProd(a)
        | ReduceL1(a) | ReduceL2(a) | ReduceLogSum(a) | ReduceLogSumExp(a) | ReduceSumSquare(a) => {
            one(reduce::reduce(a, cx)?)
        }
        ArgMax(a) | ArgMin(a) => one(reduce::arg_reduce(a, cx)?),
        Reshape(a) => one(layout::reshape(a.allowzero, cx)?),
        Flatten(a) => one(layout::flatten(a.axis, cx)?),
        Transpose(a) => one(layout::transpose(a.perm.as_deref(), cx)?),
        Squeeze => one(layout::squeeze(cx)?),
        Unsqueeze => one(layout::unsqueeze(cx)?),
        Concat(a) => one(layout::concat(a.axis, cx)?),
        Split(a) => layout::split(a, cx),
        Slice => one(layout::slice(cx)?),
        Expand => one(layout::expand(cx)?),
        Tile => one(layout::tile(cx)?),
        Pad(_) => one(layout::pad(cx)?),
        DepthToSpace(a) => one(layout::depth_to_space(a.blocksize, cx)?),
        SpaceToDepth(a) => one(layout::space_to_depth(a.blocksize, cx)?),
        Shape(a) => one(sym::shape(a, cx)?),
        Size => one(sym::size(cx)?),
        ConstantOfShape(a) => one(sym::constant_of_shape(a.dtype, cx)?),
        Range => one(sym::range(cx)?),
        Gather(a) => one(misc::gather(a.axis, cx)?),
        GatherElements(_) => {
            let idx = cx.input(1)?.fact.shape.clone();
            one(Inferred::new(cx.input(0)?.fact.dtype, idx))
        }
        GatherNd(a) => one(misc::gather_nd(a.batch_dims, cx)?),
        ScatterNd(_) | ScatterElements(_) => one(cx.same_as(0)?),
        Resize(a) => one(misc::resize(a, cx)?),
        TopK(a) => misc::top_k(a.axis, cx),
        OneHot(a) => one(misc::one_hot(a.axis, cx)?),
        NonZero => {
            let rank = cx.input(0)?.fact.shape.rank();
            let n = cx.fresh();
            let rows = rank.map_or_else(|| cx.fresh(), |r| Dim::Fixed(r as u64));
            one(Inferred::new(
                Some(DType::I64),
                super::shape::Shape::Ranked(vec![rows, n]),
            ))
        }
        EyeLike(a) => {
            let x = cx.input(0)?;
            one(Inferred::new(
                a.dtype.or(x.fact.dtype),
                x.fact.shape.clone(),
            ))
        }
        Compress(a) => one(misc::compress(a.axis, cx)?),
        QuantizeLinear(a) => {
            let zp = cx.opt(2).and_then(|z| z.fact.dtype);
            let dtype = zp.or(a.output_dtype).unwrap_or(DType::U8);
            one(Inferred::new(Some(dtype), cx.input(0)?.fact.shape.clone()))
        }
        DequantizeLinear(_) => {
            let dtype = cx.input(1)?.fact.dtype;
            one(Inferred::new(dtype, cx.input(0)?.fact.shape.clone()))
        }
        Lstm(a) => misc::recurrent(a, true, cx),
        Gru(a) => misc::recurrent(a, false, cx),
        Custom(_) => Ok(Vec::new()),
    }
}

/// The inputs of the op being inferred and the symbol table.
struct Cx<'a> {
    inputs: &'a [Option<InferInput>],
    symbols: &'a mut Symbols,
    n_outputs: usize,
}

impl Cx<'_> {
    fn input(&self, i: usize) -> Result<&InferInput, String> {
        self.opt(i).ok_or_else(|| format!("input {i} is missing"))
    }

    fn opt(&self, i: usize) -> Option<&InferInput> {
        self.inputs.get(i).and_then(Option::as_ref)
    }

    fn fresh(&mut self) -> Dim {
        Dim::sym(self.symbols.fresh("unk"))
    }

    /// `dims` of the given rank, all fresh symbols.
    fn fresh_dims(&mut self, rank: usize) -> Vec<Dim> {
        (0..rank).map(|_| self.fresh()).collect()
    }

    /// A shape of `rank` fresh dims, unranked when `rank` is implausibly large.
    fn fresh_shape(&mut self, rank: usize) -> Shape {
        if rank > MAX_RANK {
            return Shape::Unranked;
        }
        Shape::Ranked(self.fresh_dims(rank))
    }

    /// The same dtype and shape as input `i`.
    fn same_as(&self, i: usize) -> Result<Inferred, String> {
        let x = self.input(i)?;
        Ok(Inferred::new(x.fact.dtype, x.fact.shape.clone()))
    }

    /// The same dtype and shape as input 0, whose rank (when known) must have `axis`.
    fn same_as_with_axis(&self, axis: i64) -> Result<Inferred, String> {
        if let Some(rank) = self.input(0)?.fact.shape.rank() {
            normalize_axis(axis, rank)?;
        }
        self.same_as(0)
    }

    /// The symbolic value of input `i`, if known.
    fn sym(&self, i: usize) -> Option<&[SymInt]> {
        self.opt(i).and_then(|x| x.sym.as_deref())
    }

    /// The integer values of input `i`, when all of them are known numbers.
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.sym(i)?.iter().map(SymInt::as_int).collect()
    }
}

#[cfg(test)]
mod tests;
