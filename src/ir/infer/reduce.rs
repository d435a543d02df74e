//! Reductions over axes.

use super::{Cx, Inferred};
use crate::ir::dtype::DType;
use crate::ir::ops::{ArgReduceAttrs, ReduceAttrs};
use crate::ir::shape::normalize_axis;
use crate::ir::shape::{Dim, Shape};

fn reduced(dims: &[Dim], axes: &[usize], keepdims: bool) -> Vec<Dim> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect()
}

pub(super) fn reduce(a: &ReduceAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let axes: Vec<i64> = match (cx.opt(1), cx.ints(1)) {
        (Some(_), Some(axes)) => axes,
        (Some(_), None) => {
            let shape = if a.keepdims {
                Shape::Ranked(cx.fresh_dims(dims.len()))
            } else {
                Shape::Unranked
            };
            return Ok(Inferred::new(dtype, shape));
        }
        (None, _) => vec![],
    };
    let axes: Vec<usize> = if axes.is_empty() {
        if a.noop_with_empty_axes {
            return Ok(Inferred::new(dtype, Shape::Ranked(dims)));
        }
        (0..dims.len()).collect()
    } else {
        axes.iter()
            .map(|&ax| normalize_axis(ax, dims.len()))
            .collect::<Result<_, _>>()?
    };
    Ok(Inferred::new(
        dtype,
        Shape::Ranked(reduced(&dims, &axes, a.keepdims)),
    ))
}

pub(super) fn arg_reduce(a: &ArgReduceAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let shape = match x.fact.shape.dims() {
        None => Shape::Unranked,
        Some(dims) => {
            let axis = normalize_axis(a.axis, dims.len())?;
            Shape::Ranked(reduced(dims, &[axis], a.keepdims))
        }
    };
    Ok(Inferred::new(Some(DType::I64), shape))
}
