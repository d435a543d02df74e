//! Ops that move data without computing on it: reshapes, transposes,
//! concatenation, splitting, slicing, padding, tiling.

use super::broadcast::broadcast_shapes;
use super::sym::{self, SymInt, dims_of, product};
use super::{Cx, Inferred, MAX_SYM_LEN};
use crate::ir::ops::SplitAttrs;
use crate::ir::shape::normalize_axis;
use crate::ir::shape::{Dim, Shape};

/// `total / known` for products of dims, cancelling equal symbolic factors.
fn divide_products(total: &[Dim], known: &[Dim]) -> Option<Dim> {
    let split = |dims: &[Dim]| -> Option<(u64, Vec<Dim>)> {
        let mut coeff = 1u64;
        let mut syms = Vec::new();
        for d in dims {
            match d.fixed() {
                Some(n) => coeff = coeff.checked_mul(n)?,
                None => syms.push(d.clone()),
            }
        }
        Some((coeff, syms))
    };
    let (tc, mut ts) = split(total)?;
    let (kc, ks) = split(known)?;
    for k in &ks {
        let at = ts.iter().position(|t| t == k)?;
        ts.remove(at);
    }
    if kc == 0 || tc % kc != 0 {
        return None;
    }
    let q = i64::try_from(tc / kc).ok()?;
    match ts.as_slice() {
        [] => Some(Dim::Fixed(q as u64)),
        [d] => d.mul_const(q),
        _ => None,
    }
}

pub(super) fn reshape(allowzero: bool, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let in_dims = x.fact.shape.dims().map(<[Dim]>::to_vec);
    let value = x.sym.clone();
    let target_len = cx.input(1)?.fact.shape.as_fixed();
    let Some(target) = cx.sym(1).map(<[SymInt]>::to_vec) else {
        let shape = match target_len.as_deref() {
            Some([n]) => cx.fresh_shape(*n),
            _ => Shape::Unranked,
        };
        return Ok(Inferred::new(dtype, shape));
    };
    let mut dims: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        dims.push(match t {
            SymInt::Int(0) if !allowzero => {
                match &in_dims {
                    Some(d) => Some(d.get(i).cloned().ok_or_else(|| {
                        format!("shape copies dim {i} of a rank-{} input", d.len())
                    })?),
                    None => None,
                }
            }
            SymInt::Int(-1) => {
                if infer_at.replace(i).is_some() {
                    return Err("the shape has more than one -1".into());
                }
                None
            }
            SymInt::Int(n) if *n < 0 => return Err(format!("the shape has dim {n}")),
            other => other.as_dim(),
        });
    }
    if let (Some(at), Some(total)) = (infer_at, &in_dims) {
        let known: Option<Vec<Dim>> = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, d)| d.clone())
            .collect();
        dims[at] = known.and_then(|k| divide_products(total, &k));
    }
    let dims = dims
        .into_iter()
        .map(|d| d.unwrap_or_else(|| cx.fresh()))
        .collect();
    let value = value.filter(|v| v.len() <= MAX_SYM_LEN);
    Ok(Inferred::new(dtype, Shape::Ranked(dims)).with_sym(value))
}

pub(super) fn flatten(axis: i64, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        let d = cx.fresh_dims(2);
        return Ok(Inferred::new(dtype, Shape::Ranked(d)));
    };
    let r = dims.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&a) {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let (outer, inner) = dims.split_at(a as usize);
    let outer = product(outer).unwrap_or_else(|| cx.fresh());
    let inner = product(inner).unwrap_or_else(|| cx.fresh());
    Ok(Inferred::new(dtype, Shape::Ranked(vec![outer, inner])))
}

pub(super) fn transpose(perm: Option<&[usize]>, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        let shape = perm.map_or(Shape::Unranked, |p| Shape::Ranked(cx.fresh_dims(p.len())));
        return Ok(Inferred::new(dtype, shape));
    };
    let out = match perm {
        None => dims.iter().rev().cloned().collect(),
        Some(p) => {
            let mut seen = vec![false; dims.len()];
            if p.len() != dims.len()
                || p.iter()
                    .any(|&i| i >= dims.len() || std::mem::replace(&mut seen[i], true))
            {
                return Err(format!(
                    "perm {p:?} is not a permutation of rank {}",
                    dims.len()
                ));
            }
            p.iter().map(|&i| dims[i].clone()).collect()
        }
    };
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

/// Normalized, sorted, distinct axes for a rank, or an error.
fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(out)
}

pub(super) fn squeeze(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let (dtype, value) = (x.fact.dtype, x.sym.clone());
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let axes = match cx.opt(1) {
        None => None,
        Some(_) => match cx.ints(1) {
            Some(a) => Some(a),
            None => return Ok(Inferred::new(dtype, Shape::Unranked)),
        },
    };
    let out = match axes {
        Some(axes) => {
            let axes = norm_axes(&axes, dims.len())?;
            for &a in &axes {
                if matches!(dims[a], Dim::Fixed(n) if n != 1) {
                    return Err(format!("cannot squeeze axis {a} of size {:?}", dims[a]));
                }
            }
            dims.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect()
        }
        None if dims.iter().all(|d| d.fixed().is_some()) => {
            dims.into_iter().filter(|d| *d != Dim::Fixed(1)).collect()
        }
        None => return Ok(Inferred::new(dtype, Shape::Unranked)),
    };
    Ok(Inferred::new(dtype, Shape::Ranked(out)).with_sym(value))
}

pub(super) fn unsqueeze(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let (dtype, value) = (x.fact.dtype, x.sym.clone());
    let (Some(dims), Some(axes)) = (x.fact.shape.dims().map(<[Dim]>::to_vec), cx.ints(1)) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let rank = dims.len() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut rest = dims.into_iter();
    let out = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Dim::Fixed(1)
            } else {
                rest.next().expect("rank counts the input dims")
            }
        })
        .collect();
    Ok(Inferred::new(dtype, Shape::Ranked(out)).with_sym(value))
}

pub(super) fn concat(axis: i64, cx: &mut Cx) -> Result<Inferred, String> {
    let present: Vec<_> = cx.inputs.iter().flatten().collect();
    let dtype = present.iter().find_map(|i| i.fact.dtype);
    let value = (|| {
        let mut all = Vec::new();
        for i in &present {
            all.extend_from_slice(i.sym.as_deref()?);
        }
        (all.len() <= MAX_SYM_LEN).then_some(all)
    })();
    let ranked: Option<Vec<&[Dim]>> = present.iter().map(|i| i.fact.shape.dims()).collect();
    let Some(ranked) = ranked else {
        let rank = present.iter().find_map(|i| i.fact.shape.rank());
        let shape = rank.map_or(Shape::Unranked, |r| Shape::Ranked(cx.fresh_dims(r)));
        return Ok(Inferred::new(dtype, shape).with_sym(value));
    };
    let rank = ranked.first().map_or(0, |d| d.len());
    if ranked.iter().any(|d| d.len() != rank) {
        return Err("inputs have different ranks".into());
    }
    let a = normalize_axis(axis, rank)?;
    let mut out: Vec<Dim> = ranked[0].to_vec();
    let mut sum = Some(Dim::Fixed(0));
    for dims in &ranked {
        sum = sum.and_then(|s| s.add(&dims[a]));
        for (i, d) in dims.iter().enumerate() {
            if i == a {
                continue;
            }
            match (&out[i], d) {
                (Dim::Fixed(x), Dim::Fixed(y)) if x != y => {
                    return Err(format!("dim {i} differs: {x} and {y}"));
                }
                (Dim::Sym(_), Dim::Fixed(_)) => out[i] = d.clone(),
                _ => {}
            }
        }
    }
    out[a] = sum.unwrap_or_else(|| cx.fresh());
    Ok(Inferred::new(dtype, Shape::Ranked(out)).with_sym(value))
}

pub(super) fn split(a: &SplitAttrs, cx: &mut Cx) -> Result<Vec<Inferred>, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let n = cx.n_outputs;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok((0..n)
            .map(|_| Inferred::new(dtype, Shape::Unranked))
            .collect());
    };
    let axis = normalize_axis(a.axis, dims.len())?;
    let sizes: Vec<Option<Dim>> = match (cx.opt(1), cx.ints(1)) {
        (Some(_), Some(s)) => {
            if s.len() != n {
                return Err(format!("{} split sizes for {n} outputs", s.len()));
            }
            s.iter()
                .map(|&v| {
                    u64::try_from(v)
                        .map(|v| Some(Dim::Fixed(v)))
                        .map_err(|_| format!("split size {v}"))
                })
                .collect::<Result<_, _>>()?
        }
        (Some(_), None) => vec![None; n],
        (None, _) => {
            if a.num_outputs.is_some_and(|p| p != n) {
                return Err(format!("num_outputs {:?} for {n} outputs", a.num_outputs));
            }
            let parts = n.max(1) as u64;
            match dims[axis].fixed() {
                Some(d) => {
                    let chunk = d.div_ceil(parts);
                    (0..parts)
                        .map(|k| Some(Dim::Fixed(chunk.min(d.saturating_sub(k * chunk)))))
                        .collect()
                }
                None if parts == 1 => vec![Some(dims[axis].clone())],
                None => vec![None; parts as usize],
            }
        }
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut d = dims.clone();
            d[axis] = s.unwrap_or_else(|| cx.fresh());
            Inferred::new(dtype, Shape::Ranked(d))
        })
        .collect())
}

/// ONNX Slice bounds on a fixed dim: the number of elements taken.
fn slice_len(dim: i64, start: i64, end: i64, step: i64) -> u64 {
    let clamp = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v.saturating_add(dim) } else { v };
        v.clamp(lo, hi)
    };
    let (s, e) = if step > 0 {
        (clamp(start, 0, dim), clamp(end, 0, dim))
    } else {
        (clamp(start, -1, dim - 1), clamp(end, -1, dim - 1))
    };
    let span = if step > 0 { e - s } else { s - e };
    if span <= 0 {
        0
    } else {
        (span as u64).div_ceil(step.unsigned_abs())
    }
}

/// ONNX uses values near i64::MAX / i32::MAX as "to the end".
fn is_to_end(end: i64) -> bool {
    end >= i64::from(i32::MAX)
}

/// The elements a slice takes from a symbolic dim, when expressible without
/// knowing whether the dim is large enough to contain the bounds.
fn slice_sym(dim: &Dim, start: i64, end: i64, step: i64) -> Option<Dim> {
    if step != 1 {
        return None;
    }
    let from_end = |v: i64| if v < 0 { dim.add_const(v) } else { None };
    match (start, end) {
        (s, e) if s >= 0 && is_to_end(e) => dim.add_const(-s),
        (s, e) if s >= 0 && e < 0 => from_end(e)?.add_const(-s),
        _ => None,
    }
}

pub(super) fn slice(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let value = x.sym.clone();
    let Some(mut dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let rank = dims.len();
    let (Some(starts), Some(ends)) = (cx.ints(1), cx.ints(2)) else {
        let d = cx.fresh_dims(rank);
        return Ok(Inferred::new(dtype, Shape::Ranked(d)));
    };
    let axes = match cx.opt(3) {
        None => (0..starts.len() as i64).collect(),
        Some(_) => match cx.ints(3) {
            Some(a) => a,
            None => {
                let d = cx.fresh_dims(rank);
                return Ok(Inferred::new(dtype, Shape::Ranked(d)));
            }
        },
    };
    let steps = match cx.opt(4) {
        None => vec![1; starts.len()],
        Some(_) => match cx.ints(4) {
            Some(s) => s,
            None => {
                let d = cx.fresh_dims(rank);
                return Ok(Inferred::new(dtype, Shape::Ranked(d)));
            }
        },
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut new_value = value.filter(|_| rank == 1);
    for k in 0..starts.len() {
        let a = normalize_axis(axes[k], rank)?;
        let (s, e, st) = (starts[k], ends[k], steps[k]);
        if st == 0 {
            return Err("slice step 0".into());
        }
        dims[a] = match dims[a].fixed().and_then(|d| i64::try_from(d).ok()) {
            Some(d) => {
                if let Some(v) = new_value.take() {
                    new_value = slice_values(&v, s, e, st);
                }
                Dim::Fixed(slice_len(d, s, e, st))
            }
            None => {
                new_value = None;
                slice_sym(&dims[a], s, e, st).unwrap_or_else(|| cx.fresh())
            }
        };
    }
    Ok(Inferred::new(dtype, Shape::Ranked(dims)).with_sym(new_value))
}

fn slice_values(v: &[SymInt], start: i64, end: i64, step: i64) -> Option<Vec<SymInt>> {
    let n = v.len() as i64;
    let len = slice_len(n, start, end, step) as i64;
    let first = if start < 0 { start + n } else { start };
    let first = if step > 0 {
        first.clamp(0, n)
    } else {
        first.clamp(-1, n - 1)
    };
    sym::gather(v, &(0..len).map(|k| first + k * step).collect::<Vec<_>>())
}

pub(super) fn expand(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let (dtype, in_shape) = (x.fact.dtype, x.fact.shape.clone());
    let target = match cx.sym(1) {
        Some(v) => Shape::Ranked(dims_of(v).ok_or("the shape has a negative dim")?),
        None => match cx.input(1)?.fact.shape.as_fixed().as_deref() {
            Some([n]) => {
                let rank = (*n).max(in_shape.rank().unwrap_or(0));
                return Ok(Inferred::new(dtype, cx.fresh_shape(rank)));
            }
            _ => return Ok(Inferred::new(dtype, Shape::Unranked)),
        },
    };
    let shape = broadcast_shapes(&[&in_shape, &target], cx.symbols)?;
    Ok(Inferred::new(dtype, shape))
}

pub(super) fn tile(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let Some(reps) = cx.ints(1) else {
        return Ok(Inferred::new(
            dtype,
            Shape::Ranked(cx.fresh_dims(dims.len())),
        ));
    };
    if reps.len() != dims.len() {
        return Err(format!("{} repeats for rank {}", reps.len(), dims.len()));
    }
    let out = dims
        .iter()
        .zip(&reps)
        .map(|(d, &r)| {
            if r < 0 {
                return Err(format!("repeat {r}"));
            }
            Ok(d.mul_const(r).unwrap_or_else(|| cx.fresh()))
        })
        .collect::<Result<_, String>>()?;
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn pad(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(mut dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let rank = dims.len();
    let axes = match cx.opt(3) {
        None => Some((0..rank as i64).collect::<Vec<_>>()),
        Some(_) => cx.ints(3),
    };
    let (Some(pads), Some(axes)) = (cx.ints(1), axes) else {
        return Ok(Inferred::new(dtype, Shape::Ranked(cx.fresh_dims(rank))));
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    for (k, &axis) in axes.iter().enumerate() {
        let a = normalize_axis(axis, rank)?;
        let total = pads[k]
            .checked_add(pads[k + axes.len()])
            .ok_or("pads overflow")?;
        dims[a] = match dims[a].add_const(total) {
            Some(d)
                if dims[a]
                    .fixed()
                    .is_none_or(|n| (n as i128) + (total as i128) >= 0) =>
            {
                d
            }
            Some(_) => return Err(format!("pads {total} make axis {a} negative")),
            None => cx.fresh(),
        };
    }
    Ok(Inferred::new(dtype, Shape::Ranked(dims)))
}

pub(super) fn depth_to_space(block: usize, cx: &mut Cx) -> Result<Inferred, String> {
    space_depth(block, false, cx)
}

pub(super) fn space_to_depth(block: usize, cx: &mut Cx) -> Result<Inferred, String> {
    space_depth(block, true, cx)
}

fn space_depth(block: usize, to_depth: bool, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Ranked(cx.fresh_dims(4))));
    };
    if dims.len() != 4 || block == 0 {
        return Err(format!(
            "needs a rank-4 input and a block size, got rank {}",
            dims.len()
        ));
    }
    let b = i64::try_from(block).map_err(|_| "block size overflows")?;
    let b2 = b.checked_mul(b).ok_or("block size overflows")?;
    let (c, h, w) = if to_depth {
        (
            dims[1].mul_const(b2),
            dims[2].div_floor(b),
            dims[3].div_floor(b),
        )
    } else {
        (
            dims[1].div_floor(b2),
            dims[2].mul_const(b),
            dims[3].mul_const(b),
        )
    };
    let mut fresh = |d: Option<Dim>| d.unwrap_or_else(|| cx.fresh());
    let out = vec![dims[0].clone(), fresh(c), fresh(h), fresh(w)];
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}
