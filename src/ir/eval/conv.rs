//! Conv and ConvTranspose over any number of spatial dims: im2col (col2im)
//! around the shared matrix product, parallel over batch × group.

use std::ops::Range;

use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, Axis, IxDyn, s};
use rayon::prelude::*;

use super::matmul::gemm_into;
use super::numeric::{Number, Real, array_of, restore};
use super::operands::{Args, MAX_ELEMENTS, element_count, strides_of, unravel};
use crate::ir::ops::{ConvAttrs, ConvTransposeAttrs, Padding};
use crate::ir::tensor::Tensor;

/// The most elements an im2col tile holds; output columns are processed in
/// tiles of this size so memory stays bounded for large images.
const IM2COL_ELEMENTS: usize = 1 << 20;
/// The fewest output columns per tile.
const CHUNK_COLUMNS: usize = 64;

/// Window geometry along the spatial dims.
pub struct Window {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pad_begin: Vec<usize>,
    pub pad_end: Vec<usize>,
    pub output: Vec<usize>,
}

impl Window {
    /// The extent of a dilated kernel along dim `d`.
    pub fn span(&self, d: usize) -> usize {
        (self.kernel[d] - 1) * self.dilations[d] + 1
    }
}

/// `values`, or all ones when empty; must have one positive entry per
/// spatial dim. Values are capped so that window arithmetic cannot overflow.
pub fn per_dim(values: &[usize], rank: usize, name: &str) -> Result<Vec<usize>, String> {
    match values.len() {
        0 => Ok(vec![1; rank]),
        n if n == rank && values.iter().all(|&v| v > 0 && v <= MAX_ELEMENTS) => Ok(values.to_vec()),
        _ => Err(format!(
            "{name} {values:?} must hold {rank} positive values"
        )),
    }
}

/// Checks that window attributes (pads, output sizes) stay below the cap.
fn capped(values: &[usize], name: &str) -> Result<(), String> {
    match values.iter().find(|&&v| v > MAX_ELEMENTS) {
        Some(v) => Err(format!("{name} value {v} is too large")),
        None => Ok(()),
    }
}

/// The window of a Conv or pooling op: pads resolved, output size computed
/// (`ceil_mode` rounds the output size up, dropping windows that would start
/// in the end padding).
pub fn window(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    padding: &Padding,
    ceil_mode: bool,
) -> Result<Window, String> {
    let rank = input.len();
    if kernel.len() != rank || kernel.contains(&0) {
        return Err(format!(
            "kernel shape {kernel:?} does not fit input spatial dims {input:?}"
        ));
    }
    let strides = per_dim(strides, rank, "strides")?;
    let dilations = per_dim(dilations, rank, "dilations")?;
    if let Padding::Explicit(p) = padding {
        capped(p, "pads")?;
    }
    let mut w = Window {
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides,
        dilations,
        pad_begin: vec![0; rank],
        pad_end: vec![0; rank],
        output: vec![0; rank],
    };
    for d in 0..rank {
        let span = w.span(d);
        let s = w.strides[d];
        let (begin, end) = match padding {
            Padding::Valid => (0, 0),
            Padding::Explicit(p) if p.is_empty() => (0, 0),
            Padding::Explicit(p) if p.len() == 2 * rank => (p[d], p[d + rank]),
            Padding::Explicit(p) => {
                return Err(format!("pads {p:?} must hold {} values", 2 * rank));
            }
            Padding::SameUpper | Padding::SameLower => {
                let out = input[d].div_ceil(s);
                let total = ((out.max(1) - 1) * s + span).saturating_sub(input[d]);
                if matches!(padding, Padding::SameUpper) {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                }
            }
        };
        let padded = input[d] + begin + end;
        if padded < span {
            return Err(format!(
                "kernel span {span} exceeds the padded input size {padded} along spatial dim {d}"
            ));
        }
        let mut out = if ceil_mode {
            (padded - span).div_ceil(s) + 1
        } else {
            (padded - span) / s + 1
        };
        if ceil_mode && (out - 1) * s >= input[d] + begin {
            out -= 1;
        }
        w.pad_begin[d] = begin;
        w.pad_end[d] = end;
        w.output[d] = out;
    }
    Ok(w)
}

/// Unpacks output positions `columns` of `channels` images of `w.input` into
/// a `[channels * kernel, columns.len()]` matrix whose row `(c, k)` holds the
/// input pixels under kernel offset `k` (zero in the padding).
fn im2col<F: Real>(x: &[F], channels: usize, w: &Window, columns: Range<usize>, cols: &mut [F]) {
    let rank = w.input.len();
    let kernel_size: usize = w.kernel.iter().product();
    let in_size: usize = w.input.iter().product();
    let in_strides = strides_of(&w.input);
    let inner_out = w.output[rank - 1];
    let width = columns.len();
    let last = rank - 1;
    let mut kpos = vec![0usize; rank];
    let mut opos = vec![0usize; rank];
    for c in 0..channels {
        let image = &x[c * in_size..(c + 1) * in_size];
        for k in 0..kernel_size {
            unravel(k, &w.kernel, &mut kpos);
            let row = &mut cols[(c * kernel_size + k) * width..][..width];
            let mut o = columns.start;
            while o < columns.end {
                let outer = o / inner_out;
                let segment_end = columns.end.min((outer + 1) * inner_out);
                let dst = &mut row[o - columns.start..segment_end - columns.start];
                unravel(outer * inner_out, &w.output, &mut opos);
                let mut base = 0isize;
                let mut inside = true;
                for d in 0..last {
                    let i = input_coord(w, d, opos[d], kpos[d]);
                    if i < 0 || i >= w.input[d] as isize {
                        inside = false;
                        break;
                    }
                    base += i * in_strides[d] as isize;
                }
                if inside {
                    let first = o % inner_out;
                    for (j, v) in dst.iter_mut().enumerate() {
                        let i = input_coord(w, last, first + j, kpos[last]);
                        *v = if i >= 0 && i < w.input[last] as isize {
                            image[(base + i) as usize]
                        } else {
                            F::ZERO
                        };
                    }
                } else {
                    dst.fill(F::ZERO);
                }
                o = segment_end;
            }
        }
    }
}

/// The input coordinate (possibly in the padding) read by output position `o`
/// at kernel offset `k` along dim `d`.
pub fn input_coord(w: &Window, d: usize, o: usize, k: usize) -> isize {
    (o * w.strides[d] + k * w.dilations[d]) as isize - w.pad_begin[d] as isize
}

struct ConvShapes {
    batch: usize,
    channels: usize,
    groups: usize,
    spatial: Vec<usize>,
}

fn conv_shapes(
    x: &[usize],
    w: &[usize],
    group: usize,
    transposed: bool,
) -> Result<ConvShapes, String> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!(
            "input {x:?} and weight {w:?} must have the same rank, at least 3"
        ));
    }
    if group == 0 || x[1] % group != 0 {
        return Err(format!(
            "{} input channels do not split into {group} groups",
            x[1]
        ));
    }
    let weight_channels = if transposed { w[0] } else { w[1] * group };
    if weight_channels != x[1] || (!transposed && w[0] % group != 0) {
        return Err(format!(
            "weight {w:?} does not fit {} input channels in {group} groups",
            x[1]
        ));
    }
    Ok(ConvShapes {
        batch: x[0],
        channels: x[1],
        groups: group,
        spatial: x[2..].to_vec(),
    })
}

fn kernel_of(attr: &Option<Vec<usize>>, weight: &[usize]) -> Result<Vec<usize>, String> {
    match attr {
        Some(k) if k[..] != weight[2..] => Err(format!(
            "kernel_shape {k:?} disagrees with weight shape {weight:?}"
        )),
        _ => Ok(weight[2..].to_vec()),
    }
}

fn bias<F: Real>(b: Option<&Tensor>, channels: usize) -> Result<Option<Vec<F>>, String> {
    match b {
        None => Ok(None),
        Some(t) if t.shape() == [channels] => Ok(Some(array_of::<F>(t).iter().copied().collect())),
        Some(t) => Err(format!("bias shape {:?} must be [{channels}]", t.shape())),
    }
}

/// Conv. Inputs: X `[N, C, ...]`, W `[M, C/group, k...]`, B? `[M]`.
pub fn conv(attrs: &ConvAttrs, args: &Args) -> Result<Tensor, String> {
    let (x, w) = (args.get(0)?, args.get(1)?);
    let dtype = x.dtype();
    let s = conv_shapes(x.shape(), w.shape(), attrs.group, false)?;
    let kernel = kernel_of(&attrs.kernel_shape, w.shape())?;
    let win = window(
        &s.spatial,
        &kernel,
        &attrs.strides,
        &attrs.dilations,
        &attrs.padding,
        false,
    )?;
    let out_channels = w.shape()[0];
    let mut out_shape = vec![s.batch, out_channels];
    out_shape.extend(&win.output);
    element_count(&out_shape)?;
    dispatch_real!(dtype, F => {
        let x = array_of::<F>(x).as_standard_layout().into_owned();
        let w = array_of::<F>(w).as_standard_layout().into_owned();
        let b = bias::<F>(args.opt(2), out_channels)?;
        let x = x.as_slice().expect("standard layout");
        let w = w.as_slice().expect("standard layout");
        let group_in = s.channels / s.groups;
        let group_out = out_channels / s.groups;
        let kernel_size: usize = kernel.iter().product();
        let in_size: usize = s.spatial.iter().product();
        let out_size: usize = win.output.iter().product();
        let pointwise = kernel_size == 1
            && win.strides.iter().all(|&v| v == 1)
            && win.pad_begin.iter().all(|&v| v == 0)
            && win.output == s.spatial;
        let depth = group_in * kernel_size;
        let tile = (IM2COL_ELEMENTS / depth.max(1)).clamp(CHUNK_COLUMNS, out_size.max(CHUNK_COLUMNS));
        let mut y = vec![F::ZERO; element_count(&out_shape)?];
        // One block per (image, group), split into column tiles; both levels run in parallel.
        y.par_chunks_mut((group_out * out_size).max(1)).enumerate().for_each(|(t, out)| {
            let (n, g) = (t / s.groups, t % s.groups);
            let image = &x[(n * s.channels + g * group_in) * in_size..][..group_in * in_size];
            if group_in == 1 && win.input.len() == 2 {
                // Depthwise: a 1-channel im2col would feed the product tiny matrices.
                for (m, plane) in out.chunks_mut(out_size.max(1)).enumerate() {
                    let o = g * group_out + m;
                    depthwise_2d(image, &w[o * kernel_size..][..kernel_size], &win, plane);
                    if let Some(b) = &b {
                        plane.iter_mut().for_each(|v| *v += b[o]);
                    }
                }
                return;
            }
            let weights = &w[g * group_out * depth..][..group_out * depth];
            let weights = ArrayView2::from_shape((group_out, depth), weights).expect("sizes match");
            let mut out = ArrayViewMut2::from_shape((group_out, out_size), out).expect("sizes match");
            let tiles: Vec<_> = out.axis_chunks_iter_mut(Axis(1), tile).enumerate().collect();
            tiles.into_par_iter().for_each(|(i, mut out_tile)| {
                let columns = i * tile..i * tile + out_tile.ncols();
                if pointwise {
                    let image = ArrayView2::from_shape((group_in, out_size), image).expect("sizes match");
                    gemm_into(weights, image.slice(s![.., columns]), F::ZERO, out_tile.view_mut());
                } else {
                    let mut cols = vec![F::ZERO; depth * columns.len()];
                    let width = columns.len();
                    im2col(image, group_in, &win, columns, &mut cols);
                    let cols = ArrayView2::from_shape((depth, width), &cols[..]).expect("sizes match");
                    gemm_into(weights, cols, F::ZERO, out_tile.view_mut());
                }
                if let Some(b) = &b {
                    for (m, mut row) in out_tile.outer_iter_mut().enumerate() {
                        let v = b[g * group_out + m];
                        row.iter_mut().for_each(|o| *o += v);
                    }
                }
            });
        });
        let y = ArrayD::from_shape_vec(IxDyn(&out_shape), y).map_err(|e| e.to_string())?;
        Ok(restore(y, dtype))
    })
}

/// One channel of a 2-D convolution with one input channel, accumulated
/// into `out` (zeroed) tap by tap, each tap over the output columns whose
/// input column is inside the image.
fn depthwise_2d<F: Real>(x: &[F], kernel: &[F], w: &Window, out: &mut [F]) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sh, sw) = (w.strides[0], w.strides[1]);
    let (dh, dw) = (w.dilations[0], w.dilations[1]);
    let (ph, pw) = (w.pad_begin[0], w.pad_begin[1]);
    for r in 0..oh {
        let row = &mut out[r * ow..][..ow];
        for a in 0..kh {
            let Some(y) = (r * sh + a * dh).checked_sub(ph).filter(|&y| y < ih) else {
                continue;
            };
            let line = &x[y * iw..][..iw];
            for b in 0..kw {
                let weight = kernel[a * kw + b];
                let shift = b * dw;
                // Output columns c with 0 <= c*sw + shift - pw < iw.
                let first = pw.saturating_sub(shift).div_ceil(sw);
                let end = if iw + pw > shift {
                    ((iw + pw - shift - 1) / sw + 1).min(ow)
                } else {
                    0
                };
                if sw == 1 {
                    let start = first + shift - pw;
                    for (o, &v) in row[first..end.max(first)].iter_mut().zip(&line[start..]) {
                        *o += v * weight;
                    }
                } else {
                    for (c, o) in row.iter_mut().enumerate().take(end).skip(first) {
                        *o += line[c * sw + shift - pw] * weight;
                    }
                }
            }
        }
    }
}

/// ConvTranspose. Inputs: X `[N, C, ...]`, W `[C, M/group, k...]`, B? `[M]`.
pub fn conv_transpose(attrs: &ConvTransposeAttrs, args: &Args) -> Result<Tensor, String> {
    let (x, w) = (args.get(0)?, args.get(1)?);
    let dtype = x.dtype();
    let s = conv_shapes(x.shape(), w.shape(), attrs.group, true)?;
    let rank = s.spatial.len();
    let kernel = kernel_of(&attrs.kernel_shape, w.shape())?;
    let strides = per_dim(&attrs.strides, rank, "strides")?;
    let dilations = per_dim(&attrs.dilations, rank, "dilations")?;
    let output_padding = match attrs.output_padding.len() {
        0 => vec![0; rank],
        n if n == rank => attrs.output_padding.clone(),
        _ => {
            return Err(format!(
                "output_padding {:?} must hold {rank} values",
                attrs.output_padding
            ));
        }
    };
    if let Some(shape) = &attrs.output_shape {
        if shape.len() != rank {
            return Err(format!("output_shape {shape:?} must hold {rank} values"));
        }
        capped(shape, "output_shape")?;
    }
    capped(&output_padding, "output_padding")?;
    if let Padding::Explicit(p) = &attrs.padding {
        capped(p, "pads")?;
    }
    let full = |d: usize| {
        strides[d] * (s.spatial[d].max(1) - 1)
            + output_padding[d]
            + (kernel[d] - 1) * dilations[d]
            + 1
    };
    let mut pad_begin = vec![0usize; rank];
    let mut output = vec![0usize; rank];
    for d in 0..rank {
        match &attrs.padding {
            Padding::SameUpper | Padding::SameLower => {
                let out = attrs
                    .output_shape
                    .as_ref()
                    .map_or(s.spatial[d] * strides[d], |o| o[d]);
                let total = full(d).checked_sub(out).ok_or_else(|| {
                    format!(
                        "output size {out} exceeds the full transposed size {}",
                        full(d)
                    )
                })?;
                pad_begin[d] = if matches!(attrs.padding, Padding::SameUpper) {
                    total / 2
                } else {
                    total - total / 2
                };
                output[d] = out;
            }
            Padding::Explicit(p) if p.len() == 2 * rank || p.is_empty() => {
                let (begin, end) = if p.is_empty() {
                    (0, 0)
                } else {
                    (p[d], p[d + rank])
                };
                pad_begin[d] = begin;
                output[d] = match &attrs.output_shape {
                    Some(o) => o[d],
                    None => full(d)
                        .checked_sub(begin + end)
                        .ok_or("pads exceed the output size")?,
                };
            }
            Padding::Explicit(p) => {
                return Err(format!("pads {p:?} must hold {} values", 2 * rank));
            }
            Padding::Valid => {
                output[d] = attrs.output_shape.as_ref().map_or(full(d), |o| o[d]);
            }
        }
    }
    let pad_end = vec![0; rank];
    let win = Window {
        input: s.spatial.clone(),
        kernel: kernel.clone(),
        strides,
        dilations,
        pad_begin,
        pad_end,
        output,
    };
    let group_in = s.channels / s.groups;
    let group_out = w.shape()[1];
    let out_channels = group_out * s.groups;
    let kernel_size: usize = kernel.iter().product();
    element_count(&[group_out, kernel_size, s.spatial.iter().product()])?;
    let mut out_shape = vec![s.batch, out_channels];
    out_shape.extend(&win.output);
    element_count(&out_shape)?;
    dispatch_real!(dtype, F => {
        let x = array_of::<F>(x).as_standard_layout().into_owned();
        let w = array_of::<F>(w).as_standard_layout().into_owned();
        let b = bias::<F>(args.opt(2), out_channels)?;
        let x = x.as_slice().expect("standard layout");
        let w = w.as_slice().expect("standard layout");
        let kernel_size: usize = kernel.iter().product();
        let in_size: usize = s.spatial.iter().product();
        let out_size: usize = win.output.iter().product();
        let mut y = vec![F::ZERO; element_count(&out_shape)?];
        let task = |t: usize, out: &mut [F]| {
            let (n, g) = (t / s.groups, t % s.groups);
            let image = &x[(n * s.channels + g * group_in) * in_size..][..group_in * in_size];
            let image = ArrayView2::from_shape((group_in, in_size), image).expect("sizes match");
            let weights = &w[g * group_in * group_out * kernel_size..][..group_in * group_out * kernel_size];
            let weights = ArrayView2::from_shape((group_in, group_out * kernel_size), weights).expect("sizes match");
            let mut cols = ndarray::Array2::<F>::zeros((group_out * kernel_size, in_size));
            gemm_into(weights.t(), image, F::ZERO, cols.view_mut());
            col2im(cols.as_slice().expect("standard layout"), group_out, &win, out);
            if let Some(b) = &b {
                for (m, row) in out.chunks_mut(out_size.max(1)).enumerate() {
                    let v = b[g * group_out + m];
                    row.iter_mut().for_each(|o| *o += v);
                }
            }
        };
        let chunk = (group_out * out_size).max(1);
        if s.batch * s.groups > 1 {
            y.par_chunks_mut(chunk).enumerate().for_each(|(t, out)| task(t, out));
        } else if !y.is_empty() {
            task(0, &mut y);
        }
        let y = ArrayD::from_shape_vec(IxDyn(&out_shape), y).map_err(|e| e.to_string())?;
        Ok(restore(y, dtype))
    })
}

/// Adds each column of `[channels * kernel, input]` into the output image
/// at the position its kernel offset maps to (the inverse of [`im2col`]).
fn col2im<F: Real>(cols: &[F], channels: usize, w: &Window, out: &mut [F]) {
    let rank = w.input.len();
    let kernel_size: usize = w.kernel.iter().product();
    let in_size: usize = w.input.iter().product();
    let out_size: usize = w.output.iter().product();
    let out_strides = strides_of(&w.output);
    let mut kpos = vec![0usize; rank];
    let mut ipos = vec![0usize; rank];
    for c in 0..channels {
        let image = &mut out[c * out_size..][..out_size];
        for k in 0..kernel_size {
            unravel(k, &w.kernel, &mut kpos);
            let row = &cols[(c * kernel_size + k) * in_size..][..in_size];
            'pixels: for (i, &v) in row.iter().enumerate() {
                unravel(i, &w.input, &mut ipos);
                let mut offset = 0usize;
                for d in 0..rank {
                    let o = input_coord(w, d, ipos[d], kpos[d]);
                    if o < 0 || o >= w.output[d] as isize {
                        continue 'pixels;
                    }
                    offset += o as usize * out_strides[d];
                }
                image[offset] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn attrs(padding: Padding, strides: Vec<usize>, group: usize) -> ConvAttrs {
        ConvAttrs {
            kernel_shape: None,
            strides,
            dilations: vec![],
            padding,
            group,
            activation: None,
        }
    }

    /// Direct definition of a 2-D convolution, for comparison.
    fn naive(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        stride: usize,
        pad: usize,
        group: usize,
    ) -> ArrayD<f32> {
        let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        let mg = m / group;
        assert_eq!(c, cg * group);
        ArrayD::from_shape_fn(IxDyn(&[n, m, oh, ow]), |i| {
            let (b, o, y, xx) = (i[0], i[1], i[2], i[3]);
            let g = o / mg;
            let mut acc = 0.0;
            for ci in 0..cg {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (y * stride + ky) as isize - pad as isize;
                        let ix = (xx * stride + kx) as isize - pad as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                            acc +=
                                x[[b, g * cg + ci, iy as usize, ix as usize]] * w[[o, ci, ky, kx]];
                        }
                    }
                }
            }
            acc
        })
    }

    #[test]
    fn depthwise_matches_one_plain_conv_per_channel() {
        // Multiplier 2, dilation, stride and uneven pads: the depthwise path
        // against a group-1 convolution (im2col) of each channel alone.
        let (c, mult) = (3, 2);
        let x = ArrayD::from_shape_fn(IxDyn(&[1, c, 9, 8]), |i| {
            ((i[1] * 13 + i[2] * 5 + i[3] * 3) % 11) as f32 - 5.0
        });
        let w = ArrayD::from_shape_fn(IxDyn(&[c * mult, 1, 3, 2]), |i| {
            ((i[0] * 7 + i[2] * 3 + i[3]) % 5) as f32 - 2.0
        });
        let b = ArrayD::from_shape_fn(IxDyn(&[c * mult]), |i| i[0] as f32 * 0.5);
        let mut a = attrs(Padding::Explicit(vec![2, 0, 1, 3]), vec![2, 1], c);
        a.dilations = vec![2, 3];
        let run = |a: &ConvAttrs, x: ArrayD<f32>, w: ArrayD<f32>, b: ArrayD<f32>| {
            let (xt, wt, bt) = (Tensor::F32(x), Tensor::F32(w), Tensor::F32(b));
            let inputs = [Some(&xt), Some(&wt), Some(&bt)];
            let op = Op::Conv(a.clone());
            conv(a, &Args::new(&op, &inputs).unwrap()).unwrap().to_f32()
        };
        let y = run(&a, x.clone(), w.clone(), b.clone());
        let plain = ConvAttrs {
            group: 1,
            ..a.clone()
        };
        for ch in 0..c {
            let xc = x.slice(s![.., ch..ch + 1, .., ..]).to_owned().into_dyn();
            let rows = ch * mult..(ch + 1) * mult;
            let wc = w.slice(s![rows.clone(), .., .., ..]).to_owned().into_dyn();
            let bc = b.slice(s![rows.clone()]).to_owned().into_dyn();
            let want = run(&plain, xc, wc, bc);
            let got = y.slice(s![.., rows, .., ..]).to_owned().into_dyn();
            assert_eq!(got, want, "channel {ch}");
        }
    }

    #[test]
    fn conv_matches_the_direct_definition() {
        for (stride, pad, group) in [(1, 0, 1), (2, 1, 1), (1, 1, 2), (2, 1, 4)] {
            let x = ArrayD::from_shape_fn(IxDyn(&[2, 4, 7, 6]), |i| {
                ((i[1] * 31 + i[2] * 7 + i[3] * 3 + i[0]) % 17) as f32 - 8.0
            });
            let w = ArrayD::from_shape_fn(IxDyn(&[4, 4 / group, 3, 3]), |i| {
                ((i[0] * 5 + i[1] * 3 + i[2] + i[3] * 2) % 7) as f32 - 3.0
            });
            let a = attrs(Padding::Explicit(vec![pad; 4]), vec![stride; 2], group);
            let (xt, wt) = (Tensor::F32(x.clone()), Tensor::F32(w.clone()));
            let inputs = [Some(&xt), Some(&wt)];
            let op = Op::Conv(a.clone());
            let y = conv(&a, &Args::new(&op, &inputs).unwrap()).unwrap();
            assert_eq!(
                y,
                Tensor::F32(naive(&x, &w, stride, pad, group)),
                "{stride} {pad} {group}"
            );
        }
    }

    #[test]
    fn same_upper_keeps_the_size_and_bias_is_added() {
        let x = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
        let b = t(&[1], vec![0.5]);
        let a = attrs(Padding::SameUpper, vec![], 1);
        let op = Op::Conv(a.clone());
        let inputs = [Some(&x), Some(&w), Some(&b)];
        let y = conv(&a, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(
            y,
            t(
                &[1, 1, 3, 3],
                vec![4.5, 4.5, 2.5, 4.5, 4.5, 2.5, 2.5, 2.5, 1.5]
            )
        );
    }

    #[test]
    fn conv_transpose_inverts_the_stride() {
        let x = t(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let w = t(&[1, 1, 2, 2], vec![1.0, 1.0, 1.0, 1.0]);
        let a = ConvTransposeAttrs {
            kernel_shape: None,
            strides: vec![2, 2],
            dilations: vec![],
            padding: Padding::Explicit(vec![]),
            group: 1,
            output_padding: vec![],
            output_shape: None,
            activation: None,
        };
        let op = Op::ConvTranspose(a.clone());
        let inputs = [Some(&x), Some(&w)];
        let y = conv_transpose(&a, &Args::new(&op, &inputs).unwrap()).unwrap();
        #[rustfmt::skip]
        let want = vec![
            1.0, 1.0, 2.0, 2.0,
            1.0, 1.0, 2.0, 2.0,
            3.0, 3.0, 4.0, 4.0,
            3.0, 3.0, 4.0, 4.0,
        ];
        assert_eq!(y, t(&[1, 1, 4, 4], want));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = t(&[1, 3, 4, 4], vec![0.0; 48]);
        let w = t(&[2, 2, 3, 3], vec![0.0; 36]);
        let a = attrs(Padding::Valid, vec![], 1);
        let op = Op::Conv(a.clone());
        let inputs = [Some(&x), Some(&w)];
        assert!(conv(&a, &Args::new(&op, &inputs).unwrap()).is_err());
        let big = t(&[1, 2, 2, 2], vec![0.0; 8]);
        let w = t(&[1, 2, 3, 3], vec![0.0; 18]);
        let inputs = [Some(&big), Some(&w)];
        assert!(conv(&a, &Args::new(&op, &inputs).unwrap()).is_err());
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let w = t(
            &[16, 8, 3, 3],
            (0..16 * 8 * 9)
                .map(|i| ((i * 17) % 23) as f32 * 0.07 - 0.8)
                .collect(),
        );
        let a = attrs(Padding::Explicit(vec![1; 4]), vec![1, 1], 1);
        let op = Op::Conv(a.clone());
        // One image splits the product's columns; two images split the batch.
        for (batch, side) in [(1, 80), (2, 40)] {
            let n = batch * 8 * side * side;
            let x = t(
                &[batch, 8, side, side],
                (0..n)
                    .map(|i| ((i * 37) % 101) as f32 * 0.013 - 0.6)
                    .collect(),
            );
            let inputs = [Some(&x), Some(&w)];
            let args = Args::new(&op, &inputs).unwrap();
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| conv(&a, &args).unwrap())
            };
            assert_eq!(on(1), on(3));
        }
    }
}
