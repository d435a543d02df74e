//! Numpy-style broadcasting of elementwise ops.

use super::sym::{self, SymInt};
use super::{Cx, Inferred};
use crate::ir::dtype::DType;
use crate::ir::ops::Op;
use crate::ir::shape::{Dim, Shape, Symbols};

/// The broadcast of two dims: equal dims and `N` with `1` give `N`; two
/// different symbols give a fresh one; two different fixed dims other than 1
/// are an error.
fn broadcast_dim(a: &Dim, b: &Dim, symbols: &mut Symbols) -> Result<Dim, String> {
    Ok(match (a, b) {
        _ if a == b => a.clone(),
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        (Dim::Fixed(x), Dim::Fixed(y)) => {
            return Err(format!("dims {x} and {y} cannot broadcast"));
        }
        // The symbolic side must be 1 or equal to the fixed one: either way the
        // result is the fixed dim.
        (Dim::Fixed(_), _) => a.clone(),
        (_, Dim::Fixed(_)) => b.clone(),
        _ => Dim::sym(symbols.fresh("unk")),
    })
}

/// The broadcast of several shapes; unranked if any is.
pub fn broadcast_shapes(shapes: &[&Shape], symbols: &mut Symbols) -> Result<Shape, String> {
    let mut out: Vec<Dim> = Vec::new();
    for shape in shapes {
        let Some(dims) = shape.dims() else {
            return Ok(Shape::Unranked);
        };
        if dims.len() > out.len() {
            let mut longer = dims[..dims.len() - out.len()].to_vec();
            longer.append(&mut out);
            out = longer;
        }
        merge_right(&mut out, dims, symbols)?;
    }
    Ok(Shape::Ranked(out))
}

/// Broadcasts `dims` into the right end of `out` (which is at least as long).
fn merge_right(out: &mut [Dim], dims: &[Dim], symbols: &mut Symbols) -> Result<(), String> {
    let offset = out.len() - dims.len();
    for (i, d) in dims.iter().enumerate() {
        out[offset + i] = broadcast_dim(&out[offset + i], d, symbols)?;
    }
    Ok(())
}

/// An elementwise op over all present inputs: the broadcast shape, the dtype of
/// input `dtype_from` unless `dtype` is given.
pub(super) fn elementwise(
    cx: &mut Cx,
    dtype_from: usize,
    dtype: Option<DType>,
) -> Result<Inferred, String> {
    let shapes: Vec<Shape> = cx
        .inputs
        .iter()
        .flatten()
        .map(|i| i.fact.shape.clone())
        .collect();
    let refs: Vec<&Shape> = shapes.iter().collect();
    let shape = broadcast_shapes(&refs, cx.symbols)?;
    let dtype = dtype.or_else(|| cx.opt(dtype_from).and_then(|x| x.fact.dtype));
    Ok(Inferred::new(dtype, shape))
}

/// Add, Sub, Mul, Div: elementwise, carrying symbolic values through.
pub(super) fn arithmetic(op: &Op, cx: &mut Cx) -> Result<Inferred, String> {
    let out = elementwise(cx, 0, None)?;
    let (Some(a), Some(b)) = (cx.sym(0), cx.sym(1)) else {
        return Ok(out);
    };
    let value = match op {
        Op::Add => sym::arithmetic(a, b, SymInt::add),
        Op::Sub => sym::arithmetic(a, b, |x, y| x.add(&y.neg()?)),
        Op::Mul => sym::arithmetic(a, b, SymInt::mul),
        Op::Div => sym::arithmetic(a, b, SymInt::div),
        _ => None,
    };
    Ok(out.with_sym(value))
}
