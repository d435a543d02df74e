//! MatMul, Gemm and Einsum.

use std::collections::HashMap;

use super::broadcast::broadcast_shapes;
use super::{Cx, Inferred};
use crate::ir::dtype::DType;
use crate::ir::ops::{AttentionAttrs, GemmAttrs};
use crate::ir::shape::{Dim, Shape};

/// Two dims that must be equal: the fixed one wins; fixed and different is an error.
fn unify(a: &Dim, b: &Dim, what: &str) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) if x != y => Err(format!("{what}: {x} and {y} differ")),
        (Dim::Sym(_), Dim::Fixed(_)) => Ok(b.clone()),
        _ => Ok(a.clone()),
    }
}

/// numpy `matmul`; `dtype` overrides the input dtype (MatMulInteger: i32).
pub(super) fn matmul(cx: &mut Cx, dtype: Option<DType>) -> Result<Inferred, String> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let dtype = dtype.or(a.fact.dtype);
    let (Some(ad), Some(bd)) = (a.fact.shape.dims(), b.fact.shape.dims()) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let (ad, bd) = (ad.to_vec(), bd.to_vec());
    if ad.is_empty() || bd.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a2 = if ad.len() == 1 {
        vec![Dim::Fixed(1), ad[0].clone()]
    } else {
        ad.clone()
    };
    let b2 = if bd.len() == 1 {
        vec![bd[0].clone(), Dim::Fixed(1)]
    } else {
        bd.clone()
    };
    unify(&a2[a2.len() - 1], &b2[b2.len() - 2], "inner dims")?;
    let batch = broadcast_shapes(
        &[
            &Shape::Ranked(a2[..a2.len() - 2].to_vec()),
            &Shape::Ranked(b2[..b2.len() - 2].to_vec()),
        ],
        cx.symbols,
    )?;
    let mut out = batch.dims().map(<[Dim]>::to_vec).unwrap_or_default();
    if ad.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if bd.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

/// Linear: x `[..., K]` times weight `[K, N]` gives `[..., N]`.
pub(super) fn linear(cx: &mut Cx) -> Result<Inferred, String> {
    if let Some(rank) = cx.input(1)?.fact.shape.rank().filter(|&r| r != 2) {
        return Err(format!("the weight must be 2-D, it has rank {rank}"));
    }
    matmul(cx, None)
}

/// Attention: `[batch, q_heads, q_len, v_head_size]` for 4-D inputs,
/// `[batch, q_len, q_heads * v_head_size]` for 3-D ones.
pub(super) fn attention(attrs: &AttentionAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let (q, v) = (cx.input(0)?, cx.input(2)?);
    let dtype = q.fact.dtype;
    let (Some(qd), Some(vd)) = (q.fact.shape.dims(), v.fact.shape.dims()) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let (qd, vd) = (qd.to_vec(), vd.to_vec());
    match (qd.len(), vd.len()) {
        (4, 4) => Ok(Inferred::new(
            dtype,
            Shape::Ranked(vec![
                qd[0].clone(),
                qd[1].clone(),
                qd[2].clone(),
                vd[3].clone(),
            ]),
        )),
        (3, 3) => {
            let hidden = match (attrs.q_num_heads, attrs.kv_num_heads, vd[2].fixed()) {
                (Some(qh), Some(kvh), Some(v_hidden)) if kvh > 0 && v_hidden % kvh as u64 == 0 => {
                    Dim::Fixed(v_hidden / kvh as u64 * qh as u64)
                }
                _ => cx.fresh(),
            };
            Ok(Inferred::new(
                dtype,
                Shape::Ranked(vec![qd[0].clone(), qd[1].clone(), hidden]),
            ))
        }
        (qr, vr) => Err(format!(
            "Q and V must both be 3-D or 4-D, got ranks {qr} and {vr}"
        )),
    }
}

pub(super) fn gemm(attrs: &GemmAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let dtype = a.fact.dtype;
    let pick = |shape: &Shape, trans: bool| -> Result<Option<(Dim, Dim)>, String> {
        match shape.dims() {
            None => Ok(None),
            Some([r, c]) => Ok(Some(if trans {
                (c.clone(), r.clone())
            } else {
                (r.clone(), c.clone())
            })),
            Some(d) => Err(format!("Gemm input of rank {}", d.len())),
        }
    };
    let (am, bm) = (
        pick(&a.fact.shape, attrs.trans_a)?,
        pick(&b.fact.shape, attrs.trans_b)?,
    );
    if let (Some((_, k1)), Some((k2, _))) = (&am, &bm) {
        unify(k1, k2, "inner dims")?;
    }
    let m = am.map(|(m, _)| m).unwrap_or_else(|| cx.fresh());
    let n = bm.map(|(_, n)| n).unwrap_or_else(|| cx.fresh());
    Ok(Inferred::new(dtype, Shape::Ranked(vec![m, n])))
}

/// Einsum with explicit (`->`) or implicit output and `...` broadcasting.
pub(super) fn einsum(equation: &str, cx: &mut Cx) -> Result<Inferred, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let present: Vec<_> = cx.inputs.iter().flatten().collect();
    if terms.len() != present.len() {
        return Err(format!(
            "equation has {} operands, the node {}",
            terms.len(),
            present.len()
        ));
    }
    let dtype = present.first().and_then(|i| i.fact.dtype);
    let mut letters: HashMap<char, Dim> = HashMap::new();
    let mut counts: HashMap<char, usize> = HashMap::new();
    let mut ellipsis = Shape::Ranked(vec![]);
    for (term, input) in terms.iter().zip(&present) {
        let Some(dims) = input.fact.shape.dims() else {
            return Ok(Inferred::new(dtype, Shape::Unranked));
        };
        let (before, after) = match term.split_once("...") {
            Some((b, a)) => (b, Some(a)),
            None => (*term, None),
        };
        let named = before.chars().count() + after.map_or(0, |a| a.chars().count());
        if named > dims.len() || (after.is_none() && named != dims.len()) {
            return Err(format!("term '{term}' does not fit rank {}", dims.len()));
        }
        let mut assign = |c: char, d: &Dim| -> Result<(), String> {
            if !c.is_ascii_alphabetic() {
                return Err(format!("bad subscript '{c}'"));
            }
            *counts.entry(c).or_default() += 1;
            let merged = match letters.get(&c) {
                Some(prev) if *prev == Dim::Fixed(1) => d.clone(),
                Some(prev) if *d == Dim::Fixed(1) => prev.clone(),
                Some(prev) => unify(prev, d, &format!("subscript '{c}'"))?,
                None => d.clone(),
            };
            letters.insert(c, merged);
            Ok(())
        };
        let nb = before.chars().count();
        for (c, d) in before.chars().zip(dims) {
            assign(c, d)?;
        }
        if let Some(after) = after {
            let na = after.chars().count();
            let tail = &dims[dims.len() - na..];
            for (c, d) in after.chars().zip(tail) {
                assign(c, d)?;
            }
            let mid = Shape::Ranked(dims[nb..dims.len() - na].to_vec());
            ellipsis = broadcast_shapes(&[&ellipsis, &mid], cx.symbols)?;
        }
    }
    let out_term: String = match rhs {
        Some(r) => r.to_string(),
        None => {
            let mut once: Vec<char> = counts
                .iter()
                .filter(|(_, n)| **n == 1)
                .map(|(c, _)| *c)
                .collect();
            once.sort_unstable();
            let dots = if lhs.contains("...") { "..." } else { "" };
            format!("{dots}{}", once.into_iter().collect::<String>())
        }
    };
    let mut out = Vec::new();
    let (before, after) = match out_term.split_once("...") {
        Some((b, a)) => (b.to_string(), Some(a.to_string())),
        None => (out_term.clone(), None),
    };
    let lookup = |c: char| {
        letters
            .get(&c)
            .cloned()
            .ok_or(format!("output subscript '{c}' is not an input's"))
    };
    for c in before.chars() {
        out.push(lookup(c)?);
    }
    if let Some(after) = after {
        out.extend(ellipsis.dims().unwrap_or(&[]).iter().cloned());
        for c in after.chars() {
            out.push(lookup(c)?);
        }
    }
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}
