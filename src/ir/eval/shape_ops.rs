//! Shape and data-movement ops: Reshape, Flatten, Transpose, Squeeze,
//! Unsqueeze, Concat, Split, Slice, Expand, Tile, Pad, Shape,
//! ConstantOfShape, Range, DepthToSpace, SpaceToDepth, Trilu, EyeLike.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, concatenate};

use super::broadcast::broadcast_shape;
use super::numeric::{Number, array_of, restore};
use super::operands::{Args, axes, axis, dim, element_count};
use crate::ir::dtype::DType;
use crate::ir::ops::{
    ConstantOfShapeAttrs, DepthToSpaceAttrs, DepthToSpaceMode, EyeLikeAttrs, PadMode, ReshapeAttrs,
    Scalar, ShapeAttrs, SplitAttrs, TransposeAttrs,
};
use crate::ir::tensor::{Element, Tensor};
use crate::with_tensor;

/// `a` in row-major order with a new shape of the same element count.
fn reshaped<T: Clone>(a: ArrayViewD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    a.to_shape(IxDyn(shape))
        .map(|c| c.into_owned())
        .map_err(|_| format!("cannot reshape {:?} to {shape:?}", a.shape()))
}

fn permuted<T: Clone>(a: ArrayViewD<T>, perm: &[usize]) -> ArrayD<T> {
    a.permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .into_owned()
}

/// Reshape. Inputs: data, shape (0 copies the input dim unless `allowzero`,
/// one -1 is inferred).
pub fn reshape(attrs: &ReshapeAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let requested = args.ints(1)?;
    let mut shape = Vec::with_capacity(requested.len());
    let mut inferred = None;
    for (i, &v) in requested.iter().enumerate() {
        shape.push(match v {
            0 if !attrs.allowzero => *x
                .shape()
                .get(i)
                .ok_or_else(|| format!("shape entry {i} copies a dim the input does not have"))?,
            -1 if inferred.is_none() => {
                inferred = Some(i);
                1
            }
            v => dim(v)?,
        });
    }
    if let Some(i) = inferred {
        let known = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("shape overflows")?;
        if known == 0 || x.len() % known != 0 {
            return Err(format!(
                "cannot infer a dim reshaping {:?} to {requested:?}",
                x.shape()
            ));
        }
        shape[i] = x.len() / known;
    }
    if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(x.len()) {
        return Err(format!("cannot reshape {:?} to {requested:?}", x.shape()));
    }
    with_tensor!(x, a => reshaped(a.view(), &shape).map(Element::wrap))
}

/// Flatten to 2-D at `axis` (which may equal the rank).
pub fn flatten(ax: i64, x: &Tensor) -> Result<Tensor, String> {
    let rank = x.shape().len();
    let split = if ax == rank as i64 {
        rank
    } else {
        axis(ax, rank.max(1))?
    };
    let outer: usize = x.shape()[..split.min(rank)].iter().product();
    let inner: usize = x.shape()[split.min(rank)..].iter().product();
    with_tensor!(x, a => reshaped(a.view(), &[outer, inner]).map(Element::wrap))
}

/// Transpose by `perm` (reversed axes when absent).
pub fn transpose(attrs: &TransposeAttrs, x: &Tensor) -> Result<Tensor, String> {
    let rank = x.shape().len();
    let perm = attrs
        .perm
        .clone()
        .unwrap_or_else(|| (0..rank).rev().collect());
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    Ok(with_tensor!(x, a => Element::wrap(permuted(a.view(), &perm))))
}

/// Squeeze. Inputs: data, axes? (all size-1 dims when absent).
pub fn squeeze(args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    let removed = match args.opt_ints(1)? {
        Some(a) => {
            let a = axes(&a, rank)?;
            if let Some(&bad) = a.iter().find(|&&d| x.shape()[d] != 1) {
                return Err(format!(
                    "cannot squeeze axis {bad} of shape {:?}",
                    x.shape()
                ));
            }
            a
        }
        None => (0..rank).filter(|&d| x.shape()[d] == 1).collect(),
    };
    let shape: Vec<usize> = (0..rank)
        .filter(|d| !removed.contains(d))
        .map(|d| x.shape()[d])
        .collect();
    with_tensor!(x, a => reshaped(a.view(), &shape).map(Element::wrap))
}

/// Unsqueeze. Inputs: data, axes (positions in the output).
pub fn unsqueeze(args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let new_axes = args.ints(1)?;
    let rank = x.shape().len() + new_axes.len();
    let inserted = axes(&new_axes, rank)?;
    let mut dims = x.shape().iter();
    let shape: Vec<usize> = (0..rank)
        .map(|d| {
            if inserted.contains(&d) {
                1
            } else {
                *dims.next().unwrap_or(&1)
            }
        })
        .collect();
    with_tensor!(x, a => reshaped(a.view(), &shape).map(Element::wrap))
}

/// Joins tensors of one dtype along `axis`, which is the one dim they may differ in.
fn join(ax: usize, parts: &[&Tensor]) -> Result<Tensor, String> {
    macro_rules! join_as {
        ($($variant:ident),*) => {
            match parts[0] {
                $(Tensor::$variant(_) => {
                    let views = parts
                        .iter()
                        .map(|t| match t {
                            Tensor::$variant(a) => Ok(a.view()),
                            other => Err(format!("inputs differ in dtype: {} and {}", parts[0].dtype(), other.dtype())),
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    concatenate(Axis(ax), &views)
                        .map(Tensor::$variant)
                        .map_err(|_| format!("shapes {:?} do not concatenate along axis {ax}", parts.iter().map(|t| t.shape()).collect::<Vec<_>>()))
                })*
            }
        };
    }
    join_as!(
        Bool, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64
    )
}

/// Concat along `axis`.
pub fn concat(ax: i64, parts: &[&Tensor]) -> Result<Tensor, String> {
    let first = parts.first().ok_or("Concat needs an input")?;
    let rank = first.shape().len();
    if parts.iter().any(|t| t.shape().len() != rank) {
        return Err("Concat inputs differ in rank".into());
    }
    let ax = axis(ax, rank)?;
    let total: usize = parts.iter().map(|t| t.shape()[ax]).sum();
    let mut shape = first.shape().to_vec();
    shape[ax] = total;
    element_count(&shape)?;
    join(ax, parts)
}

/// Split along `axis` into the sizes of input 1, or `num_outputs` equal
/// parts (the last one smaller).
pub fn split(attrs: &SplitAttrs, args: &Args) -> Result<Vec<Tensor>, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    let ax = axis(attrs.axis, rank)?;
    let len = x.shape()[ax];
    let sizes: Vec<usize> = match (args.opt_ints(1)?, attrs.num_outputs) {
        (Some(s), _) => s.into_iter().map(dim).collect::<Result<_, _>>()?,
        (None, Some(n)) if n > 0 => {
            let part = len.div_ceil(n);
            (0..n)
                .map(|i| part.min(len.saturating_sub(i * part)))
                .collect()
        }
        _ => return Err("Split needs split sizes or num_outputs".into()),
    };
    if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(len) {
        return Err(format!("split sizes {sizes:?} do not add up to {len}"));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&size| {
            let range = ndarray::Slice::from(start..start + size);
            start += size;
            Ok(with_tensor!(x, a => Element::wrap(a.slice_axis(Axis(ax), range).to_owned())))
        })
        .collect()
}

/// The indices a Slice takes along one axis of length `len`.
fn slice_indices(len: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, String> {
    if step == 0 {
        return Err("slice step must not be 0".into());
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    let n = len as i128;
    let resolve = |v: i64| {
        if v < 0 {
            i128::from(v) + n
        } else {
            i128::from(v)
        }
    };
    let (start, end, step) = (resolve(start), resolve(end), i128::from(step));
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (start.clamp(0, n), end.clamp(0, n));
        while i < end {
            out.push(i as usize);
            i += step;
        }
    } else {
        let (mut i, end) = (start.clamp(0, n - 1), end.clamp(-1, n - 1));
        while i > end {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}

/// Slice. Inputs: data, starts, ends, axes?, steps?
pub fn slice(args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    let starts = args.ints(1)?;
    let ends = args.ints(2)?;
    let sliced = match args.opt_ints(3)? {
        Some(a) => axes(&a, rank)?,
        None => (0..starts.len()).collect(),
    };
    let steps = args.opt_ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || sliced.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    if sliced.iter().any(|&a| a >= rank) {
        return Err(format!("slice axes {sliced:?} exceed rank {rank}"));
    }
    let picks: Vec<(usize, Vec<usize>)> = sliced
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            Ok((
                a,
                slice_indices(x.shape()[a], starts[i], ends[i], steps[i])?,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(with_tensor!(x, a => {
        let mut out = a.clone();
        for (ax, indices) in &picks {
            out = out.select(Axis(*ax), indices);
        }
        Element::wrap(out)
    }))
}

/// Expand: broadcasts data with the shape input (both ways).
pub fn expand(args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let target: Vec<usize> = args
        .ints(1)?
        .into_iter()
        .map(dim)
        .collect::<Result<_, _>>()?;
    let shape = broadcast_shape(&[x.shape(), &target])?;
    with_tensor!(x, a => a
        .broadcast(IxDyn(&shape))
        .map(|v| Element::wrap(v.to_owned()))
        .ok_or_else(|| format!("{:?} does not expand to {shape:?}", a.shape())))
}

/// Tile. Inputs: data, repeats (one per dim).
pub fn tile(args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let repeats: Vec<usize> = args
        .ints(1)?
        .into_iter()
        .map(dim)
        .collect::<Result<_, _>>()?;
    if repeats.len() != x.shape().len() {
        return Err(format!(
            "{} repeats for rank {}",
            repeats.len(),
            x.shape().len()
        ));
    }
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .zip(&repeats)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    if element_count(&shape)? == 0 {
        return Ok(with_tensor!(x, a => Element::wrap(ArrayD::from_elem(
            IxDyn(&shape),
            a.iter().next().copied().unwrap_or_default()
        ))));
    }
    with_tensor!(x, a => {
        let mut out = a.clone();
        for (ax, &r) in repeats.iter().enumerate() {
            if r != 1 {
                let copies = vec![out.view(); r];
                out = if r == 0 {
                    out.slice_axis(Axis(ax), ndarray::Slice::from(0..0)).to_owned()
                } else {
                    concatenate(Axis(ax), &copies).map_err(|e| e.to_string())?
                };
            }
        }
        Ok(Element::wrap(out))
    })
}

/// The source index along one axis for output index `o` of a padded axis, or
/// `None` for the constant fill.
fn pad_source(mode: PadMode, o: i64, begin: i64, len: i64) -> Option<usize> {
    let i = o - begin;
    if (0..len).contains(&i) {
        return Some(i as usize);
    }
    if len == 0 {
        return None;
    }
    Some(match mode {
        PadMode::Constant => return None,
        PadMode::Edge => i.clamp(0, len - 1) as usize,
        PadMode::Wrap => i.rem_euclid(len) as usize,
        PadMode::Reflect => {
            if len == 1 {
                0
            } else {
                let period = 2 * (len - 1);
                let r = i.rem_euclid(period);
                (if r < len { r } else { period - r }) as usize
            }
        }
    })
}

/// Pad. Inputs: data, pads (begins then ends, negative crops), constant_value?, axes?
pub fn pad(mode: PadMode, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    let pads = args.ints(1)?;
    let padded = match args.opt_ints(3)? {
        Some(a) => axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * padded.len() {
        return Err(format!("{} pads for {} axes", pads.len(), padded.len()));
    }
    let mut begin = vec![0i64; rank];
    let mut shape = x.shape().to_vec();
    for (i, &ax) in padded.iter().enumerate() {
        let (b, e) = (pads[i], pads[i + padded.len()]);
        let size = (x.shape()[ax] as i64).saturating_add(b).saturating_add(e);
        shape[ax] = usize::try_from(size).map_err(|_| format!("pads {pads:?} crop below zero"))?;
        begin[ax] = b;
        if mode != PadMode::Constant && x.shape()[ax] == 0 && size > 0 {
            return Err(format!("cannot {mode:?}-pad an empty axis"));
        }
    }
    element_count(&shape)?;
    let fill = args.opt(2).filter(|t| !t.is_empty());
    with_tensor!(x, a => {
        let value = fill.map_or(Ok(Default::default()), |t| first_as(t, x.dtype()))?;
        let mut src = vec![0usize; rank];
        let out = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
            for d in 0..rank {
                match pad_source(mode, idx[d] as i64, begin[d], a.shape()[d] as i64) {
                    Some(s) => src[d] = s,
                    None => return value,
                }
            }
            a[&src[..]]
        });
        Ok(Element::wrap(out))
    })
}

/// The first element of `t`, which must have `dtype`, as `T`.
fn first_as<T: Element>(t: &Tensor, dtype: DType) -> Result<T, String> {
    if t.dtype() != dtype {
        return Err(format!("constant value is {}, data is {dtype}", t.dtype()));
    }
    with_tensor!(t, a => a.iter().next().map(|v| T::from_f64(v.to_f64())).ok_or_else(|| "empty constant".to_string()))
}

/// Shape: dims `start..end` of the input as i64.
pub fn shape(attrs: &ShapeAttrs, x: &Tensor) -> Result<Tensor, String> {
    let rank = x.shape().len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(attrs.start);
    let end = clamp(attrs.end.unwrap_or(rank)).max(start);
    let dims: Vec<i64> = x.shape()[start..end].iter().map(|&d| d as i64).collect();
    Tensor::from_i64(&[dims.len()], dims).map_err(|e| e.to_string())
}

/// A tensor of `shape` filled with `value` in `dtype`.
fn filled(dtype: DType, shape: &[usize], value: Scalar) -> Result<Tensor, String> {
    element_count(shape)?;
    let shape = IxDyn(shape);
    let t = match value {
        Scalar::Int(v) => Tensor::I64(ArrayD::from_elem(shape, v)),
        Scalar::UInt(v) => Tensor::U64(ArrayD::from_elem(shape, v)),
        Scalar::Bool(v) => Tensor::Bool(ArrayD::from_elem(shape, v)),
        Scalar::Float(v) => Tensor::F64(ArrayD::from_elem(shape, v)),
    };
    t.cast(dtype).map_err(|e| e.to_string())
}

/// ConstantOfShape. Input: the output shape.
pub fn constant_of_shape(attrs: &ConstantOfShapeAttrs, args: &Args) -> Result<Tensor, String> {
    let shape: Vec<usize> = args
        .ints(0)?
        .into_iter()
        .map(dim)
        .collect::<Result<_, _>>()?;
    filled(attrs.dtype, &shape, attrs.value)
}

/// Range. Inputs: start, limit, delta (scalars of one dtype).
pub fn range(args: &Args) -> Result<Tensor, String> {
    let start = args.get(0)?;
    let dtype = start.dtype();
    let scalar = |i: usize| -> Result<f64, String> {
        let t = args.get(i)?;
        match t.to_f64_vec()[..] {
            [v] => Ok(v),
            _ => Err(format!("input {i} must be a scalar")),
        }
    };
    let (s, l, d) = (scalar(0)?, scalar(1)?, scalar(2)?);
    if d == 0.0 {
        return Err("delta must not be 0".into());
    }
    let count = ((l - s) / d).ceil().max(0.0);
    if !count.is_finite() || count > super::operands::MAX_ELEMENTS as f64 {
        return Err(format!("range of {count} elements is too large"));
    }
    let count = count as usize;
    dispatch_number!(dtype, T => {
        let (s, d) = (array_of::<T>(start).iter().copied().next().unwrap_or(T::ZERO), T::from_f64(d));
        let values: Vec<T> = (0..count).map(|i| s.add_wrapping(T::from_f64(i as f64).mul_wrapping(d))).collect();
        Ok(restore(ArrayD::from_shape_vec(IxDyn(&[count]), values).map_err(|e| e.to_string())?, dtype))
    })
}

fn nchw(x: &Tensor) -> Result<[usize; 4], String> {
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(format!("expects a 4-D input, got shape {s:?}")),
    }
}

/// DepthToSpace on `[N, C, H, W]` in DCR or CRD order.
pub fn depth_to_space(attrs: &DepthToSpaceAttrs, x: &Tensor) -> Result<Tensor, String> {
    let [n, c, h, w] = nchw(x)?;
    let b = attrs.blocksize;
    if b == 0 || b.checked_mul(b).is_none_or(|bb| c % bb != 0) {
        return Err(format!("{c} channels do not divide by blocksize² ({b})"));
    }
    let (split, perm): (Vec<usize>, [usize; 6]) = match attrs.mode {
        DepthToSpaceMode::Dcr => (vec![n, b, b, c / (b * b), h, w], [0, 3, 4, 1, 5, 2]),
        DepthToSpaceMode::Crd => (vec![n, c / (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]),
    };
    let out = [n, c / (b * b), h * b, w * b];
    with_tensor!(x, a => {
        let six = reshaped(a.view(), &split)?;
        reshaped(permuted(six.view(), &perm).view(), &out).map(Element::wrap)
    })
}

/// SpaceToDepth on `[N, C, H, W]`.
pub fn space_to_depth(b: usize, x: &Tensor) -> Result<Tensor, String> {
    let [n, c, h, w] = nchw(x)?;
    if b == 0 || h % b != 0 || w % b != 0 {
        return Err(format!(
            "spatial dims {h}x{w} do not divide by blocksize {b}"
        ));
    }
    let split = [n, c, h / b, b, w / b, b];
    let out = [n, c * b * b, h / b, w / b];
    with_tensor!(x, a => {
        let six = reshaped(a.view(), &split)?;
        reshaped(permuted(six.view(), &[0, 3, 5, 1, 2, 4]).view(), &out).map(Element::wrap)
    })
}

/// Trilu: keeps the upper (`j - i >= k`) or lower (`j - i <= k`) triangle of
/// the last two dims. Inputs: X, k?
pub fn trilu(upper: bool, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    if rank < 2 {
        return Err(format!("expects rank 2 or more, got shape {:?}", x.shape()));
    }
    let k = match args.opt(1) {
        Some(_) => args.int_scalar(1)?,
        None => 0,
    };
    Ok(with_tensor!(x, a => {
        let mut out = a.clone();
        for (idx, v) in out.indexed_iter_mut() {
            let (i, j) = (idx[rank - 2] as i64, idx[rank - 1] as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                *v = Default::default();
            }
        }
        Element::wrap(out)
    }))
}

/// EyeLike: ones on diagonal `k` of a 2-D tensor shaped like the input.
pub fn eye_like(attrs: &EyeLikeAttrs, x: &Tensor) -> Result<Tensor, String> {
    let [rows, cols] = *x.shape() else {
        return Err(format!("expects a 2-D input, got shape {:?}", x.shape()));
    };
    let dtype = attrs.dtype.unwrap_or(x.dtype());
    let eye = ArrayD::from_shape_fn(IxDyn(&[rows, cols]), |i| {
        if i[1] as i64 - i[0] as i64 == attrs.k {
            1i64
        } else {
            0
        }
    });
    Tensor::I64(eye).cast(dtype).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn ints(shape: &[usize], v: Vec<i64>) -> Tensor {
        Tensor::from_i64(shape, v).unwrap()
    }

    fn call(
        op: Op,
        inputs: &[Option<&Tensor>],
        f: impl Fn(&Args) -> Result<Tensor, String>,
    ) -> Tensor {
        f(&Args::new(&op, inputs).unwrap()).unwrap()
    }

    #[test]
    fn reshape_copies_zero_dims_and_infers_minus_one() {
        let x = ints(&[2, 3, 4], (0..24).collect());
        let s = ints(&[3], vec![0, -1, 2]);
        let a = ReshapeAttrs { allowzero: false };
        let y = call(Op::Reshape(a.clone()), &[Some(&x), Some(&s)], |args| {
            reshape(&a, args)
        });
        assert_eq!(y.shape(), &[2, 6, 2]);
        let bad = ints(&[2], vec![5, -1]);
        let op = Op::Reshape(a.clone());
        let inputs = [Some(&x), Some(&bad)];
        assert!(reshape(&a, &Args::new(&op, &inputs).unwrap()).is_err());
    }

    #[test]
    fn slice_handles_negative_steps_and_clamping() {
        let x = ints(&[5], (0..5).collect());
        let (s, e, st) = (
            ints(&[1], vec![-1]),
            ints(&[1], vec![i64::MIN]),
            ints(&[1], vec![-2]),
        );
        let y = call(
            Op::Slice,
            &[Some(&x), Some(&s), Some(&e), None, Some(&st)],
            slice,
        );
        assert_eq!(y.to_i64_vec().unwrap(), vec![4, 2, 0]);
        let (s, e) = (ints(&[1], vec![1]), ints(&[1], vec![i64::MAX]));
        let y = call(Op::Slice, &[Some(&x), Some(&s), Some(&e)], slice);
        assert_eq!(y.to_i64_vec().unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn pad_modes() {
        let x = ints(&[3], vec![1, 2, 3]);
        let pads = ints(&[2], vec![2, 2]);
        let run = |mode| {
            call(
                Op::Pad(crate::ir::ops::PadAttrs { mode }),
                &[Some(&x), Some(&pads)],
                |a| pad(mode, a),
            )
            .to_i64_vec()
            .unwrap()
        };
        assert_eq!(run(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(run(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(run(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(run(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
        let crop = ints(&[2], vec![-1, 0]);
        let y = call(
            Op::Pad(crate::ir::ops::PadAttrs {
                mode: PadMode::Constant,
            }),
            &[Some(&x), Some(&crop)],
            |a| pad(PadMode::Constant, a),
        );
        assert_eq!(y.to_i64_vec().unwrap(), vec![2, 3]);
    }

    #[test]
    fn depth_to_space_round_trips_with_space_to_depth() {
        let x = ints(&[1, 8, 2, 3], (0..48).collect());
        let attrs = DepthToSpaceAttrs {
            blocksize: 2,
            mode: DepthToSpaceMode::Dcr,
        };
        let y = depth_to_space(&attrs, &x).unwrap();
        assert_eq!(y.shape(), &[1, 2, 4, 6]);
        assert_eq!(space_to_depth(2, &y).unwrap(), x);
    }

    #[test]
    fn range_tile_and_huge_shapes() {
        let (s, l, d) = (ints(&[], vec![10]), ints(&[], vec![4]), ints(&[], vec![-3]));
        let y = call(Op::Range, &[Some(&s), Some(&l), Some(&d)], range);
        assert_eq!(y.to_i64_vec().unwrap(), vec![10, 7]);
        let x = ints(&[2], vec![1, 2]);
        let r = ints(&[1], vec![3]);
        let y = call(Op::Tile, &[Some(&x), Some(&r)], tile);
        assert_eq!(y.to_i64_vec().unwrap(), vec![1, 2, 1, 2, 1, 2]);
        let huge = ints(&[3], vec![1 << 20, 1 << 20, 1]);
        let op = Op::Expand;
        let inputs = [Some(&x), Some(&huge)];
        assert!(expand(&Args::new(&op, &inputs).unwrap()).is_err());
    }
}
