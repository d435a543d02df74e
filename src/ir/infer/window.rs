//! Sliding-window ops: convolutions and pooling.

use super::{Cx, Inferred};
use crate::ir::ops::{ConvAttrs, ConvTransposeAttrs, Padding, PoolAttrs};
use crate::ir::shape::{Dim, Shape};

/// The i-th entry of a per-spatial-axis list, or `default` when the list is empty.
fn at(list: &[usize], i: usize, default: usize) -> usize {
    list.get(i).copied().unwrap_or(default)
}

/// Padding of one spatial axis.
#[derive(Clone, Copy)]
enum AxisPads {
    /// Output `ceil(in / stride)`.
    Same,
    Valid,
    Explicit {
        begin: i64,
        end: i64,
    },
}

/// The window along one spatial axis.
struct AxisWindow {
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: AxisPads,
}

const TOO_LARGE: &str = "window sizes overflow";

fn int(v: usize) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| TOO_LARGE.to_string())
}

/// `dilation * (kernel - 1) + 1`: the input span one window covers.
fn span(kernel: usize, dilation: usize) -> Result<i64, String> {
    let s = dilation
        .checked_mul(kernel.saturating_sub(1))
        .and_then(|v| v.checked_add(1))
        .ok_or(TOO_LARGE)?;
    int(s)
}

/// Output length of one spatial axis of a convolution or pooling window.
/// `None` when not expressible (the caller uses a fresh symbol).
fn window_out(input: &Dim, w: &AxisWindow, ceil_mode: bool) -> Result<Option<Dim>, String> {
    if w.stride == 0 || w.dilation == 0 || w.kernel == 0 {
        return Err("kernel, stride and dilation must be positive".into());
    }
    let s = int(w.stride)?;
    let span = span(w.kernel, w.dilation)?;
    Ok(match w.pads {
        AxisPads::Same => input.add_const(s - 1).and_then(|d| d.div_floor(s)),
        AxisPads::Valid => input.add_const(s - span).and_then(|d| d.div_floor(s)),
        AxisPads::Explicit { begin, end } => {
            let padded = begin
                .checked_add(end)
                .and_then(|p| p.checked_sub(span))
                .ok_or(TOO_LARGE)?;
            match (input.fixed(), ceil_mode) {
                (Some(n), _) => {
                    let n = i64::try_from(n).map_err(|_| TOO_LARGE)?;
                    let room = n.checked_add(padded).ok_or(TOO_LARGE)?;
                    if room < 0 {
                        return Err(format!("window of {span} does not fit input {n}"));
                    }
                    let mut out = if ceil_mode {
                        (room / s) + i64::from(room % s != 0) + 1
                    } else {
                        room / s + 1
                    };
                    // A window must start inside the input or the begin padding.
                    if ceil_mode && (out - 1).saturating_mul(s) >= n.saturating_add(begin) {
                        out -= 1;
                    }
                    Some(Dim::Fixed(out as u64))
                }
                (None, false) => input
                    .add_const(padded)
                    .and_then(|d| d.div_floor(s))
                    .and_then(|d| d.add_const(1)),
                (None, true) => None,
            }
        }
    })
}

fn spatial_out(
    cx: &mut Cx,
    in_spatial: &[Dim],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    padding: &Padding,
    ceil_mode: bool,
) -> Result<Vec<Dim>, String> {
    let n = in_spatial.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel has {} dims for {n} spatial axes",
            kernel.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (i, d) in in_spatial.iter().enumerate() {
        let pads = match padding {
            Padding::SameUpper | Padding::SameLower => AxisPads::Same,
            Padding::Valid => AxisPads::Valid,
            Padding::Explicit(p) => AxisPads::Explicit {
                begin: int(at(p, i, 0))?,
                end: int(at(p, i + n, 0))?,
            },
        };
        let window = AxisWindow {
            kernel: kernel[i],
            stride: at(strides, i, 1),
            dilation: at(dilations, i, 1),
            pads,
        };
        let o = window_out(d, &window, ceil_mode)?;
        out.push(o.unwrap_or_else(|| cx.fresh()));
    }
    Ok(out)
}

/// Kernel spatial shape: the attribute, else the weight's dims after the first two.
fn kernel_shape(given: Option<&Vec<usize>>, weight: Option<&Shape>) -> Option<Vec<usize>> {
    if let Some(k) = given {
        return Some(k.clone());
    }
    let dims = weight?.as_fixed()?;
    (dims.len() > 2).then(|| dims[2..].to_vec())
}

pub(super) fn conv(a: &ConvAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let w = cx.input(1)?;
    let dtype = x.fact.dtype;
    let (xd, wd) = (
        x.fact.shape.dims().map(<[Dim]>::to_vec),
        w.fact.shape.dims().map(<[Dim]>::to_vec),
    );
    let kernel = kernel_shape(a.kernel_shape.as_ref(), Some(&w.fact.shape));
    let rank = xd.as_ref().map(Vec::len).or(wd.as_ref().map(Vec::len));
    let Some(rank) = rank.filter(|r| *r >= 2) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let batch = xd.as_ref().map_or_else(|| cx.fresh(), |d| d[0].clone());
    let channels = wd.as_ref().map_or_else(|| cx.fresh(), |d| d[0].clone());
    let spatial = match (xd, kernel) {
        (Some(d), Some(k)) => {
            spatial_out(cx, &d[2..], &k, &a.strides, &a.dilations, &a.padding, false)?
        }
        _ => cx.fresh_dims(rank - 2),
    };
    let mut out = vec![batch, channels];
    out.extend(spatial);
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn conv_transpose(a: &ConvTransposeAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let w = cx.input(1)?;
    let dtype = x.fact.dtype;
    let xd = x.fact.shape.dims().map(<[Dim]>::to_vec);
    let wd = w.fact.shape.dims().map(<[Dim]>::to_vec);
    let kernel = kernel_shape(a.kernel_shape.as_ref(), Some(&w.fact.shape));
    let Some(xd) = xd.filter(|d| d.len() >= 2) else {
        return Ok(Inferred::new(dtype, Shape::Unranked));
    };
    let n = xd.len() - 2;
    let channels = wd
        .as_ref()
        .and_then(|d| d.get(1))
        .and_then(|d| d.mul_const(a.group as i64))
        .unwrap_or_else(|| cx.fresh());
    let mut out = vec![xd[0].clone(), channels];
    for i in 0..n {
        let dim = if let Some(shape) = &a.output_shape {
            let first = shape.len().checked_sub(n);
            first
                .and_then(|f| shape.get(f + i))
                .map(|&v| Dim::Fixed(v as u64))
        } else if let Some(k) = &kernel {
            let s = int(at(&a.strides, i, 1))?;
            let span = span(at(k, i, 1), at(&a.dilations, i, 1))?;
            let extra = int(at(&a.output_padding, i, 0))?;
            let pads = match &a.padding {
                Padding::Explicit(p) => int(at(p, i, 0))?
                    .checked_add(int(at(p, i + n, 0))?)
                    .ok_or(TOO_LARGE)?,
                _ => 0,
            };
            match &a.padding {
                Padding::SameUpper | Padding::SameLower => xd[2 + i].mul_const(s),
                Padding::Valid | Padding::Explicit(_) => {
                    let tail = extra
                        .checked_add(span)
                        .and_then(|v| v.checked_sub(pads))
                        .ok_or(TOO_LARGE)?;
                    xd[2 + i]
                        .add_const(-1)
                        .and_then(|d| d.mul_const(s))
                        .and_then(|d| d.add_const(tail))
                }
            }
        } else {
            None
        };
        out.push(dim.unwrap_or_else(|| cx.fresh()));
    }
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn pool(a: &PoolAttrs, cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let dtype = x.fact.dtype;
    let Some(xd) = x.fact.shape.dims().map(<[Dim]>::to_vec) else {
        let rank = a.kernel_shape.len() + 2;
        return Ok(Inferred::new(dtype, Shape::Ranked(cx.fresh_dims(rank))));
    };
    if xd.len() < 2 {
        return Err(format!("pooling a rank-{} input", xd.len()));
    }
    let spatial = spatial_out(
        cx,
        &xd[2..],
        &a.kernel_shape,
        &a.strides,
        &a.dilations,
        &a.padding,
        a.ceil_mode,
    )?;
    let mut out = xd[..2].to_vec();
    out.extend(spatial);
    Ok(Inferred::new(dtype, Shape::Ranked(out)))
}

pub(super) fn global_pool(cx: &mut Cx) -> Result<Inferred, String> {
    let x = cx.input(0)?;
    let shape = match x.fact.shape.dims() {
        Some(d) if d.len() >= 2 => {
            let mut out = d[..2].to_vec();
            out.extend((2..d.len()).map(|_| Dim::Fixed(1)));
            Shape::Ranked(out)
        }
        Some(d) => return Err(format!("pooling a rank-{} input", d.len())),
        None => Shape::Unranked,
    };
    Ok(Inferred::new(x.fact.dtype, shape))
}
