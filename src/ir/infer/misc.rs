//! Indexing (Gather, GatherND, TopK, OneHot, Compress), Resize and the
//! recurrent layers.

use super::sym::{self, SymInt, dims_of};
use super::{Cx, Inferred, MAX_SYM_LEN};
use crate::ir::dtype::DType;
use crate::ir::ops::{AspectRatioPolicy, ResizeAttrs, RnnAttrs, RnnDirection};
use crate::ir::shape::normalize_axis;
use crate::ir::shape::{Dim, Shape};

pub(super) fn gather(axis: i64, cx: &mut Cx) -> Result<Inferred, String> {
    let (data, idx) = (cx.input(0)?, cx.input(1)?);
    let dtype = data.fact.dtype;
    let (Some(dd), Some(id)) = (data.fact.shape.dims(), idx.fact.shape.dims()) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let a = normalize_axis(axis, dd.len())?;
    let mut out = dd[..a].to_vec();
    out.extend_from_slice(id);
    out.extend_from_slice(&dd[a + 1..]);
    let value = match (dd.len(), &data.sym, cx.ints(1)) {
        (1, Some(v), Some(i)) => sym::gather(v, &i),
        _ => None,
    };
    Ok(Inferred::new(dtype, Shape::Ranked(out)).with_sym(value))
}

pub(super) fn gather_nd(batch_dims: usize, cx: &mut Cx) -> Result<Inferred, String> {
    let (data, idx) = (cx.input(0)?, cx.input(1)?);
    let dtype = data.fact.dtype;
    let (Some(dd), Some(id)) = (data.fact.shape.dims(), idx.fact.shape.dims()) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let Some(last) = id.last() else {
        return Err("indices are a scalar".into());
    };
    let Some(k) = last.fixed() else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let from = batch_dims + k as usize;
    if from > dd.len() {
        return Err(format!(
            "indices address {from} dims of a rank-{} input",
            dd.len()
        ));
    }
    let mut out = id[..id.len() - 1].to_vec();
    out.extend_from_slice(&dd[from..]);
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn top_k(axis: i64, cx: &mut Cx) -> Result<Vec<Inferred>, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let shape = match x.fact.shape.dims().map(<[Dim]>::to_vec) {
        None => Shape::Unranked,
        Some(mut d) => {
            let a = normalize_axis(axis, d.len())?;
            d[a] = match cx.sym(1).and_then(|k| k.first()).and_then(SymInt::as_dim) {
                Some(k) => k,
                None => cx.fresh(),
            };
            Shape::Ranked(d)
        }
    };
    Ok(vec![
        Inferred::new(dtype, shape.clone()),
        Inferred::new(Some(DType::I64), shape),
    ])
}

pub(super) fn one_hot(axis: i64, cx: &mut Cx) -> Result<Inferred, String> {
    let idx = cx.input(0)?;
    let dtype = cx.input(2)?.fact.dtype;
    let Some(id) = idx.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let depth = cx
        .opt(1)
        .and_then(|d| d.value.as_ref())
        .and_then(|v| (v.len() == 1).then(|| v.to_f64_vec()[0]))
        .filter(|d| *d >= 0.0 && *d < u32::MAX as f64)
        .map(|d| Dim::Fixed(d as u64))
        .or_else(|| cx.sym(1).and_then(|v| v.first()).and_then(SymInt::as_dim))
        .unwrap_or_else(|| cx.fresh());
    let a = normalize_axis(axis, id.len() + 1)?;
    let mut out = id;
    out.insert(a, depth);
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn compress(axis: Option<i64>, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let shape = match (axis, x.fact.shape.dims().map(<[Dim]>::to_vec)) {
        (None, _) => Shape::Ranked(vec![cx.fresh()]),
        (Some(_), None) => Shape::Unranked,
        (Some(a), Some(mut d)) => {
            let a = normalize_axis(a, d.len())?;
            d[a] = cx.fresh();
            Shape::Ranked(d)
        }
    };
    Ok(Inferred::new(dtype, shape))
}

/// Resize: from `sizes` (input 3) or `scales` (input 2), over `axes` or all axes.
pub(super) fn resize(a: &ResizeAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(mut dims) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let rank = dims.len();
    let axes: Vec<usize> = match &a.axes {
        Some(ax) => ax
            .iter()
            .map(|&v| normalize_axis(v, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    let sizes_given = cx
        .opt(3)
        .is_some_and(|s| s.fact.shape.as_fixed() != Some(vec![0]));
    if sizes_given {
        let sizes = cx.sym(3).and_then(dims_of);
        match sizes {
            Some(s) if s.len() != axes.len() => {
                return Err(format!("{} sizes for {} axes", s.len(), axes.len()));
            }
            Some(s) if a.keep_aspect_ratio_policy == AspectRatioPolicy::Stretch => {
                for (&ax, d) in axes.iter().zip(s) {
                    dims[ax] = d;
                }
            }
            _ => {
                for &ax in &axes {
                    dims[ax] = cx.fresh();
                }
            }
        }
        return Ok(Inferred::new(dtype, Shape::Ranked(dims)));
    }
    let scales = cx
        .opt(2)
        .and_then(|s| s.value.as_ref())
        .map(|v| v.to_f64_vec());
    match scales {
        Some(s) if s.len() == axes.len() => {
            for (&ax, scale) in axes.iter().zip(s) {
                dims[ax] = scaled(&dims[ax], scale).unwrap_or_else(|| cx.fresh());
            }
        }
        Some(s) if !s.is_empty() => {
            return Err(format!("{} scales for {} axes", s.len(), axes.len()));
        }
        _ => {
            for &ax in &axes {
                dims[ax] = cx.fresh();
            }
        }
    }
    Ok(Inferred::new(dtype, Shape::Ranked(dims)))
}

/// `floor(dim * scale)`; symbolic dims only for whole-number scales.
fn scaled(dim: &Dim, scale: f64) -> Option<Dim> {
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    match dim.fixed() {
        Some(n) => {
            let v = (n as f64 * scale).floor();
            (v < u32::MAX as f64).then_some(Dim::Fixed(v as u64))
        }
        None if scale.fract() == 0.0 && scale < MAX_SYM_LEN as f64 * 1024.0 => {
            dim.mul_const(scale as i64)
        }
        None => None,
    }
}

/// LSTM (`lstm`) or GRU: Y, Y_h and (LSTM) Y_c.
pub(super) fn recurrent(a: &RnnAttrs, lstm: bool, cx: &mut Cx) -> Result<Vec<Inferred>, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let dirs = Dim::Fixed(if a.direction == RnnDirection::Bidirectional {
        2
    } else {
        1
    });
    let hidden = Dim::Fixed(a.hidden_size as u64);
    let (seq, batch) = match x.fact.shape.dims() {
        Some([s, b, _]) if !a.batch_first => (s.clone(), b.clone()),
        Some([b, s, _]) => (s.clone(), b.clone()),
        Some(d) => return Err(format!("input of rank {}, expected 3", d.len())),
        None => (cx.fresh(), cx.fresh()),
    };
    let (y, state) = if a.batch_first {
        (
            vec![batch.clone(), seq, dirs.clone(), hidden.clone()],
            vec![batch, dirs, hidden],
        )
    } else {
        (
            vec![seq, dirs.clone(), batch.clone(), hidden.clone()],
            vec![dirs, batch, hidden],
        )
    };
    let mut out = vec![
        Inferred::new(dtype, Shape::Ranked(y)),
        Inferred::new(dtype, Shape::Ranked(state.clone())),
    ];
    if lstm {
        out.push(Inferred::new(dtype, Shape::Ranked(state)));
    }
    Ok(out)
}
