//! Symbolic integer values and the ops that produce them from shapes
//! (`Shape`, `Size`, `Range`) or consume them as shapes (`ConstantOfShape`).

use super::{Cx, Inferred, MAX_SYM_LEN};
use crate::ir::dtype::DType;
use crate::ir::ops::ShapeAttrs;
use crate::ir::shape::normalize_axis;
use crate::ir::shape::{Dim, Shape};

/// One element of a small integer tensor known before running the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymInt {
    /// A number (possibly negative, like Reshape's `-1`).
    Int(i64),
    /// A symbolic dim expression (never a fixed dim: those are `Int`).
    Dim(Dim),
}

impl SymInt {
    pub fn from_dim(d: &Dim) -> SymInt {
        match d.fixed().and_then(|n| i64::try_from(n).ok()) {
            Some(n) => SymInt::Int(n),
            None => SymInt::Dim(d.clone()),
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            SymInt::Int(n) => Some(*n),
            SymInt::Dim(_) => None,
        }
    }

    /// This element as a dim, when it is one (a non-negative number or an expression).
    pub fn as_dim(&self) -> Option<Dim> {
        match self {
            SymInt::Int(n) => u64::try_from(*n).ok().map(Dim::Fixed),
            SymInt::Dim(d) => Some(d.clone()),
        }
    }

    fn to_dim_any(&self) -> Option<Dim> {
        match self {
            SymInt::Int(n) if *n < 0 => None,
            other => other.as_dim(),
        }
    }

    /// `self + other`, when expressible.
    pub fn add(&self, other: &SymInt) -> Option<SymInt> {
        match (self, other) {
            (SymInt::Int(a), SymInt::Int(b)) => a.checked_add(*b).map(SymInt::Int),
            (SymInt::Dim(d), SymInt::Int(k)) | (SymInt::Int(k), SymInt::Dim(d)) => {
                d.add_const(*k).map(|d| SymInt::from_dim(&d))
            }
            (SymInt::Dim(a), SymInt::Dim(b)) => a.add(b).map(|d| SymInt::from_dim(&d)),
        }
    }

    pub fn neg(&self) -> Option<SymInt> {
        self.mul(&SymInt::Int(-1))
    }

    /// `self * other`, when one side is a number.
    pub fn mul(&self, other: &SymInt) -> Option<SymInt> {
        match (self, other) {
            (SymInt::Int(a), SymInt::Int(b)) => a.checked_mul(*b).map(SymInt::Int),
            (SymInt::Dim(d), SymInt::Int(k)) | (SymInt::Int(k), SymInt::Dim(d)) => {
                d.mul_const(*k).map(|d| SymInt::from_dim(&d))
            }
            (SymInt::Dim(_), SymInt::Dim(_)) => None,
        }
    }

    /// Floor division by a positive number (integer division of non-negative
    /// values, as shape arithmetic uses it).
    pub fn div(&self, other: &SymInt) -> Option<SymInt> {
        match (self, other) {
            (SymInt::Int(a), SymInt::Int(b)) if *a >= 0 && *b > 0 => Some(SymInt::Int(a / b)),
            (SymInt::Dim(d), SymInt::Int(k)) if *k > 0 => {
                d.div_floor(*k).map(|d| SymInt::from_dim(&d))
            }
            _ => None,
        }
    }
}

/// Dims from a symbolic shape value; `None` if any element is not a dim.
pub fn dims_of(values: &[SymInt]) -> Option<Vec<Dim>> {
    values.iter().map(SymInt::to_dim_any).collect()
}

/// The product of dims, when expressible (at most one symbolic factor).
pub fn product(dims: &[Dim]) -> Option<Dim> {
    dims.iter().try_fold(Dim::Fixed(1), |acc, d| acc.mul(d))
}

pub(super) fn shape(a: &ShapeAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let Some(dims) = x.fact.shape.dims() else {
        let n = cx.fresh();
        return Ok(Inferred::new(Some(DType::I64), Shape::Ranked(vec![n])));
    };
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(a.start);
    let end = a.end.map_or(dims.len(), clamp).max(start);
    let part = &dims[start..end];
    let sym = (part.len() <= MAX_SYM_LEN).then(|| part.iter().map(SymInt::from_dim).collect());
    Ok(Inferred::new(Some(DType::I64), Shape::fixed(&[part.len()])).with_sym(sym))
}

pub(super) fn size(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let sym = x
        .fact
        .shape
        .dims()
        .and_then(product)
        .map(|d| vec![SymInt::from_dim(&d)]);
    Ok(Inferred::new(Some(DType::I64), Shape::scalar()).with_sym(sym))
}

pub(super) fn constant_of_shape(dtype: DType, cx: &mut Cx) -> Result<Inferred, String> {
    let shape_input = cx.input(0)?;
    let dims = match cx.sym(0) {
        Some(v) => Some(dims_of(v).ok_or("the shape has a negative dim")?),
        None => None,
    };
    let shape = match (dims, shape_input.fact.shape.as_fixed()) {
        (Some(d), _) => Shape::Ranked(d),
        (None, Some(s)) if s.len() == 1 => cx.fresh_shape(s[0]),
        _ => Shape::Unranked,
    };
    Ok(Inferred::new(Some(dtype), shape))
}

/// `Range(start, limit, delta)`: `max(0, ceil((limit - start) / delta))` elements.
pub(super) fn range(cx: &mut Cx) -> Result<Inferred, String> {
    let dtype = cx.input(0)?.fact.dtype;
    let scalar = |i: usize| cx.sym(i).and_then(|v| v.first().cloned());
    let (start, limit, delta) = (scalar(0), scalar(1), scalar(2));
    if let (Some(SymInt::Int(s)), Some(SymInt::Int(l)), Some(SymInt::Int(d))) =
        (&start, &limit, &delta)
    {
        if *d == 0 {
            return Err("Range delta is 0".into());
        }
        let span = i128::from(*l) - i128::from(*s);
        let d128 = i128::from(*d);
        let count = (span + d128 - d128.signum()).div_euclid(d128).max(0);
        let count = u64::try_from(count).map_err(|_| "Range is too long")?;
        let sym = (count as usize <= MAX_SYM_LEN)
            .then(|| (0..count as i64).map(|k| SymInt::Int(s + k * d)).collect());
        return Ok(Inferred::new(dtype, Shape::Ranked(vec![Dim::Fixed(count)])).with_sym(sym));
    }
    let float = |i: usize| {
        let v = cx.opt(i)?.value.as_ref()?;
        (v.len() == 1).then(|| v.to_f64_vec()[0])
    };
    if let (Some(s), Some(l), Some(d)) = (float(0), float(1), float(2)) {
        let count = ((l - s) / d).ceil().max(0.0);
        if !count.is_finite() || count > u32::MAX as f64 {
            return Err(format!("Range({s}, {l}, {d}) has no valid length"));
        }
        return Ok(Inferred::new(
            dtype,
            Shape::Ranked(vec![Dim::Fixed(count as u64)]),
        ));
    }
    // limit - start with delta 1 stays symbolic; a negative result cannot be
    // told apart, so it is only trusted through the expression.
    let len = match (start, limit, delta) {
        (Some(s), Some(l), Some(SymInt::Int(1))) => s
            .neg()
            .and_then(|ns| l.add(&ns))
            .and_then(|v| v.to_dim_any()),
        _ => None,
    };
    let len = len.unwrap_or_else(|| cx.fresh());
    Ok(Inferred::new(dtype, Shape::Ranked(vec![len])))
}

/// Elementwise arithmetic on symbolic values with length-1 broadcasting.
pub(super) fn arithmetic(
    a: &[SymInt],
    b: &[SymInt],
    f: impl Fn(&SymInt, &SymInt) -> Option<SymInt>,
) -> Option<Vec<SymInt>> {
    let n = a.len().max(b.len());
    if (a.len() != n && a.len() != 1) || (b.len() != n && b.len() != 1) {
        return None;
    }
    (0..n)
        .map(|i| f(&a[i.min(a.len() - 1)], &b[i.min(b.len() - 1)]))
        .collect()
}

/// Picks elements `indices` (negative from the end) of a symbolic value.
pub fn gather(values: &[SymInt], indices: &[i64]) -> Option<Vec<SymInt>> {
    indices
        .iter()
        .map(|&i| {
            let n = values.len();
            let i = normalize_axis(i, n).ok()?;
            Some(values[i].clone())
        })
        .collect()
}
