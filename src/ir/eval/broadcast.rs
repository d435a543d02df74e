//! Ops over two or more inputs with numpy broadcasting: arithmetic,
//! comparisons, logic, bitwise ops, Min/Max/Sum/Mean.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::numeric::{Number, array_of, restore};
use super::operands::element_count;
use crate::ir::dtype::DType;
use crate::ir::ops::{Op, ShiftDirection};
use crate::ir::tensor::{Element, Tensor};

/// The numpy broadcast of several shapes.
pub fn broadcast_shape(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    element_count(&out)?;
    Ok(out)
}

/// `a` viewed at the broadcast `shape`.
pub fn broadcast_view<'b, T>(
    a: &'b ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>, String> {
    a.broadcast(IxDyn(shape))
        .ok_or_else(|| format!("shape {:?} does not broadcast to {shape:?}", a.shape()))
}

/// Applies `f` elementwise over the broadcast of `a` and `b`.
pub fn zip_broadcast<A, B, C>(
    a: ArrayViewD<A>,
    b: ArrayViewD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>, String>
where
    A: Copy,
    B: Copy,
{
    let shape = broadcast_shape(&[a.shape(), b.shape()])?;
    if let (Some(&y), true) = (b.iter().next(), b.len() == 1 && shape == a.shape()) {
        return Ok(a.mapv(|x| f(x, y)));
    }
    let (a, b) = (broadcast_view(&a, &shape)?, broadcast_view(&b, &shape)?);
    Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y)))
}

/// Evaluates a two-input broadcasting op (Add ... BitShift in [`Op`]'s list).
pub fn binary(op: &Op, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let dtype = a.dtype();
    match op {
        Op::And | Op::Or | Op::Xor => logic(op, a, b),
        Op::BitwiseAnd | Op::BitwiseOr | Op::BitwiseXor | Op::BitShift(_) => bitwise(op, a, b),
        Op::Equal if dtype == DType::Bool => {
            let (x, y) = (bools(a)?, bools(b)?);
            Ok(Tensor::Bool(zip_broadcast(x, y, |p, q| p == q)?))
        }
        Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            same_dtype(a, b)?;
            dispatch_number!(dtype, T => {
                let (x, y) = (array_of::<T>(a), array_of::<T>(b));
                let cmp: fn(T, T) -> bool = match op {
                    Op::Equal => |p, q| p == q,
                    Op::Less => |p, q| p < q,
                    Op::LessOrEqual => |p, q| p <= q,
                    Op::Greater => |p, q| p > q,
                    _ => |p, q| p >= q,
                };
                Ok(Tensor::Bool(zip_broadcast(x.view(), y.view(), cmp)?))
            })
        }
        Op::Pow => pow(a, b),
        Op::PRelu => {
            same_dtype(a, b)?;
            dispatch_number!(dtype, T => {
                let (x, slope) = (array_of::<T>(a), array_of::<T>(b));
                Ok(restore(prelu(x.view(), slope.view())?, dtype))
            })
        }
        _ => {
            same_dtype(a, b)?;
            dispatch_number!(dtype, T => {
                let (x, y) = (array_of::<T>(a), array_of::<T>(b));
                let (x, y) = (x.view(), y.view());
                let z = match op {
                    Op::Add => zip_broadcast(x, y, T::add_wrapping),
                    Op::Sub => zip_broadcast(x, y, T::sub_wrapping),
                    Op::Mul => zip_broadcast(x, y, T::mul_wrapping),
                    Op::Div => zip_broadcast(x, y, T::div_onnx),
                    Op::Mod(m) => zip_broadcast(x, y, |p: T, q: T| p.rem_onnx(q, m.fmod)),
                    other => return Err(format!("{} is not a binary op", other.name())),
                }?;
                Ok(restore(z, dtype))
            })
        }
    }
}

/// `x < 0 ? slope * x : x` with `slope` broadcast to `x`'s shape.
fn prelu<T: Number>(x: ArrayViewD<T>, slope: ArrayViewD<T>) -> Result<ArrayD<T>, String> {
    let slope = broadcast_view(&slope, x.shape())?;
    Ok(Zip::from(&x).and(&slope).map_collect(
        |&v, &s| {
            if v < T::ZERO { v.mul_wrapping(s) } else { v }
        },
    ))
}

fn same_dtype(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(format!(
            "operand dtypes differ: {} and {}",
            a.dtype(),
            b.dtype()
        ))
    }
}

fn bools(t: &Tensor) -> Result<ArrayViewD<'_, bool>, String> {
    match t {
        Tensor::Bool(a) => Ok(a.view()),
        other => Err(format!("expects a bool tensor, got {}", other.dtype())),
    }
}

fn logic(op: &Op, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let f: fn(bool, bool) -> bool = match op {
        Op::And => |p, q| p && q,
        Op::Or => |p, q| p || q,
        _ => |p, q| p != q,
    };
    Ok(Tensor::Bool(zip_broadcast(bools(a)?, bools(b)?, f)?))
}

fn bitwise(op: &Op, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    same_dtype(a, b)?;
    macro_rules! int_case {
        ($($variant:ident: $t:ty),*) => {
            match (a, b) {
                $((Tensor::$variant(x), Tensor::$variant(y)) => {
                    let bits = <$t>::BITS;
                    let f: Box<dyn Fn($t, $t) -> $t> = match op {
                        Op::BitwiseAnd => Box::new(|p, q| p & q),
                        Op::BitwiseOr => Box::new(|p, q| p | q),
                        Op::BitwiseXor => Box::new(|p, q| p ^ q),
                        Op::BitShift(s) => match s.direction {
                            ShiftDirection::Left => Box::new(move |p: $t, q: $t| {
                                u32::try_from(q).ok().filter(|&q| q < bits).map_or(0, |q| p << q)
                            }),
                            // Out-of-range right shifts leave only the sign fill:
                            // all ones for a negative signed value, else zero
                            // (two shifts, as one by the full width overflows).
                            ShiftDirection::Right => Box::new(move |p: $t, q: $t| {
                                u32::try_from(q).ok().filter(|&q| q < bits).map_or((p >> (bits - 1)) >> 1, |q| p >> q)
                            }),
                        },
                        other => return Err(format!("{} is not a bitwise op", other.name())),
                    };
                    Ok(Tensor::$variant(zip_broadcast(x.view(), y.view(), f)?))
                })*
                _ => Err(format!("expects integer tensors, got {}", a.dtype())),
            }
        };
    }
    int_case!(U8: u8, I8: i8, U16: u16, I16: i16, U32: u32, I32: i32, U64: u64, I64: i64)
}

fn pow(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let dtype = a.dtype();
    if dtype.is_float() {
        return dispatch_real!(dtype, F => {
            let (x, y) = (array_of::<F>(a), array_of::<F>(b));
            Ok(restore(zip_broadcast(x.view(), y.view(), F::powf)?, dtype))
        });
    }
    dispatch_number!(dtype, T => {
        let (x, y) = (array_of::<T>(a), b.to_f64_vec());
        let y = ArrayD::from_shape_vec(IxDyn(b.shape()), y).map_err(|e| e.to_string())?;
        Ok(restore(zip_broadcast(x.view(), y.view(), |p: T, q: f64| int_pow(p, q))?, dtype))
    })
}

fn int_pow<T: Number>(base: T, exponent: f64) -> T {
    if exponent >= 0.0 && exponent.fract() == 0.0 && exponent <= f64::from(u32::MAX) {
        let mut result = T::ONE;
        let mut b = base;
        let mut e = exponent as u64;
        while e > 0 {
            if e & 1 == 1 {
                result = result.mul_wrapping(b);
            }
            b = b.mul_wrapping(b);
            e >>= 1;
        }
        result
    } else {
        T::saturating_from_f64(base.to_f64().powf(exponent))
    }
}

/// Min, Max, Sum or Mean over one or more broadcast inputs.
pub fn variadic(op: &Op, inputs: &[&Tensor]) -> Result<Tensor, String> {
    let first = inputs.first().ok_or("needs at least one input")?;
    let dtype = first.dtype();
    for t in inputs {
        same_dtype(first, t)?;
    }
    if matches!(op, Op::Mean) && !dtype.is_float() {
        return Err(format!("Mean expects float tensors, got {dtype}"));
    }
    dispatch_number!(dtype, T => {
        let mut acc = array_of::<T>(first).into_owned();
        for t in &inputs[1..] {
            let x = array_of::<T>(t);
            acc = match op {
                Op::Min => zip_broadcast(acc.view(), x.view(), T::min_nan)?,
                Op::Max => zip_broadcast(acc.view(), x.view(), T::max_nan)?,
                _ => zip_broadcast(acc.view(), x.view(), T::add_wrapping)?,
            };
        }
        if matches!(op, Op::Mean) {
            let n = T::from_f64(inputs.len() as f64);
            acc.mapv_inplace(|v| v.div_onnx(n));
        }
        Ok(restore(acc, dtype))
    })
}

/// Where: `cond ? x : y`, all three broadcast.
pub fn select(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor, String> {
    let c = bools(cond)?;
    with_pair!(x, y, (a, b) => {
        let shape = broadcast_shape(&[c.shape(), a.shape(), b.shape()])?;
        let (a, b) = (a.view(), b.view());
        let c = broadcast_view(&c, &shape)?;
        let a = broadcast_view(&a, &shape)?;
        let b = broadcast_view(&b, &shape)?;
        let y = Zip::from(&c).and(&a).and(&b).map_collect(|&c, a, b| if c { *a } else { *b });
        Ok(Element::wrap(y))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    #[test]
    fn add_broadcasts_numpy_style() {
        let y = binary(
            &Op::Add,
            &t(&[2, 1], &[1.0, 2.0]),
            &t(&[3], &[10.0, 20.0, 30.0]),
        )
        .unwrap();
        assert_eq!(y, t(&[2, 3], &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]));
        assert!(binary(&Op::Add, &t(&[2], &[1.0, 2.0]), &t(&[3], &[1.0, 2.0, 3.0])).is_err());
    }

    #[test]
    fn right_shifts_by_the_width_or_more_leave_the_sign_fill() {
        use crate::ir::ops::{BitShiftAttrs, ShiftDirection};
        let op = Op::BitShift(BitShiftAttrs {
            direction: ShiftDirection::Right,
        });
        let u =
            |v: &[u8]| Tensor::U8(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap());
        let y = binary(&op, &u(&[200, 200, 200]), &u(&[1, 8, 9])).unwrap();
        assert_eq!(y, u(&[100, 0, 0]), "onnxruntime gives 0 for unsigned");
        let i =
            |v: &[i8]| Tensor::I8(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap());
        let y = binary(&op, &i(&[-100, 100]), &i(&[8, 8])).unwrap();
        assert_eq!(y, i(&[-1, 0]));
    }

    #[test]
    fn integer_division_truncates_and_pow_stays_integer() {
        let a = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![7, -7, 3]).unwrap());
        let b = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![2, 2, 0]).unwrap());
        assert_eq!(
            binary(&Op::Div, &a, &b).unwrap().to_i64_vec().unwrap(),
            vec![3, -3, 0]
        );
        assert_eq!(
            binary(&Op::Pow, &a, &b).unwrap().to_i64_vec().unwrap(),
            vec![49, 49, 1]
        );
    }

    #[test]
    fn where_and_mean() {
        let c = Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap());
        let y = select(&c, &t(&[2], &[1.0, 2.0]), &t(&[], &[9.0])).unwrap();
        assert_eq!(y, t(&[2], &[1.0, 9.0]));
        let m = variadic(&Op::Mean, &[&t(&[2], &[1.0, 2.0]), &t(&[1], &[3.0])]).unwrap();
        assert_eq!(m, t(&[2], &[2.0, 2.5]));
    }
}
