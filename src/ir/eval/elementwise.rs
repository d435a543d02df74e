//! One-input elementwise ops, and Clip.

use ndarray::{ArrayD, ArrayViewD};

use super::numeric::{Number, Real, array_of, restore};
use crate::ir::ops::{FusedActivation, GeluApproximation, Op};
use crate::ir::tensor::Tensor;

/// Evaluates a one-input elementwise op (Abs ... Shrink in [`Op`]'s list).
pub fn unary(op: &Op, x: &Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype();
    match op {
        Op::Abs | Op::Neg | Op::Sign | Op::Relu | Op::Shrink(_) => {
            dispatch_number!(dtype, T => Ok(restore(numeric_map::<T>(op, array_of::<T>(x).view())?, dtype)))
        }
        Op::Not => match x {
            Tensor::Bool(a) => Ok(Tensor::Bool(a.mapv(|v| !v))),
            _ => Err(format!("expects a bool tensor, got {dtype}")),
        },
        Op::BitwiseNot => bitwise_not(x),
        Op::IsNaN | Op::IsInf(_) => {
            dispatch_real!(dtype, F => Ok(Tensor::Bool(float_test::<F>(op, array_of::<F>(x).view()))))
        }
        _ => {
            dispatch_real!(dtype, F => Ok(restore(float_map::<F>(op, array_of::<F>(x).view())?, dtype)))
        }
    }
}

fn numeric_map<T: Number>(op: &Op, x: ArrayViewD<T>) -> Result<ArrayD<T>, String> {
    Ok(match op {
        Op::Abs => x.mapv(T::abs_wrapping),
        Op::Neg => x.mapv(T::neg_wrapping),
        Op::Sign => x.mapv(T::sign),
        Op::Relu => x.mapv(|v| if v > T::ZERO { v } else { T::ZERO }),
        Op::Shrink(a) => {
            let (bias, lambd) = (f64::from(a.bias), f64::from(a.lambd));
            x.mapv(|v| {
                let f = v.to_f64();
                let y = if f < -lambd {
                    f + bias
                } else if f > lambd {
                    f - bias
                } else {
                    0.0
                };
                T::from_f64(y)
            })
        }
        other => return Err(format!("{} is not a numeric unary op", other.name())),
    })
}

fn bitwise_not(x: &Tensor) -> Result<Tensor, String> {
    Ok(match x {
        Tensor::U8(a) => Tensor::U8(a.mapv(|v| !v)),
        Tensor::I8(a) => Tensor::I8(a.mapv(|v| !v)),
        Tensor::U16(a) => Tensor::U16(a.mapv(|v| !v)),
        Tensor::I16(a) => Tensor::I16(a.mapv(|v| !v)),
        Tensor::U32(a) => Tensor::U32(a.mapv(|v| !v)),
        Tensor::I32(a) => Tensor::I32(a.mapv(|v| !v)),
        Tensor::U64(a) => Tensor::U64(a.mapv(|v| !v)),
        Tensor::I64(a) => Tensor::I64(a.mapv(|v| !v)),
        other => return Err(format!("expects an integer tensor, got {}", other.dtype())),
    })
}

fn float_test<F: Real>(op: &Op, x: ArrayViewD<F>) -> ArrayD<bool> {
    match op {
        Op::IsInf(a) => x.mapv(|v| {
            v.is_infinite()
                && ((v > F::ZERO && a.detect_positive) || (v < F::ZERO && a.detect_negative))
        }),
        _ => x.mapv(|v| v.is_nan()),
    }
}

/// Rounds half to even, as ONNX Round does.
pub fn round_half_even<F: Real>(v: F) -> F {
    let floor = v.floor();
    let diff = v - floor;
    let half = F::c(0.5);
    if diff > half || (diff == half && (floor * half).fract() != F::ZERO) {
        floor + F::ONE
    } else {
        floor
    }
}

pub fn sigmoid<F: Real>(v: F) -> F {
    if v >= F::ZERO {
        F::ONE / (F::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (F::ONE + e)
    }
}

fn softplus<F: Real>(v: F) -> F {
    if v > F::c(20.0) { v } else { v.exp().ln_1p() }
}

pub fn erf<F: Real>(v: F) -> F {
    F::c(libm::erf(v.to_f64()))
}

fn float_map<F: Real>(op: &Op, x: ArrayViewD<F>) -> Result<ArrayD<F>, String> {
    let zero = F::ZERO;
    let one = F::ONE;
    Ok(match op {
        Op::Sqrt => x.mapv(F::sqrt),
        Op::Reciprocal => x.mapv(F::recip),
        Op::Exp => x.mapv(F::exp),
        Op::Log => x.mapv(F::ln),
        Op::Erf => x.mapv(erf),
        Op::Tanh => x.mapv(F::tanh),
        Op::Sigmoid => x.mapv(sigmoid),
        Op::Softplus => x.mapv(softplus),
        Op::Softsign => x.mapv(|v| v / (one + v.abs())),
        Op::Floor => x.mapv(F::floor),
        Op::Ceil => x.mapv(F::ceil),
        Op::Round => x.mapv(round_half_even),
        Op::Sin => x.mapv(F::sin),
        Op::Cos => x.mapv(F::cos),
        Op::Tan => x.mapv(F::tan),
        Op::Asin => x.mapv(F::asin),
        Op::Acos => x.mapv(F::acos),
        Op::Atan => x.mapv(F::atan),
        Op::Sinh => x.mapv(F::sinh),
        Op::Cosh => x.mapv(F::cosh),
        Op::Asinh => x.mapv(F::asinh),
        Op::Acosh => x.mapv(F::acosh),
        Op::Atanh => x.mapv(F::atanh),
        Op::HardSwish => {
            let sixth = F::c(1.0 / 6.0);
            let half = F::c(0.5);
            x.mapv(|v| v * (v * sixth + half).max(zero).min(one))
        }
        Op::Mish => x.mapv(|v| v * softplus(v).tanh()),
        Op::Swish(a) => {
            let alpha = F::c(a.alpha.into());
            x.mapv(|v| v * sigmoid(alpha * v))
        }
        Op::HardSigmoid(a) => {
            let (alpha, beta) = (F::c(a.alpha.into()), F::c(a.beta.into()));
            x.mapv(|v| (alpha * v + beta).max(zero).min(one))
        }
        Op::LeakyRelu(a) => {
            let alpha = F::c(a.alpha.into());
            x.mapv(|v| if v < zero { alpha * v } else { v })
        }
        Op::Elu(a) => {
            let alpha = F::c(a.alpha.into());
            x.mapv(|v| if v < zero { alpha * (v.exp() - one) } else { v })
        }
        Op::Celu(a) => {
            let alpha = F::c(a.alpha.into());
            x.mapv(|v| v.max(zero) + (alpha * ((v / alpha).exp() - one)).min(zero))
        }
        Op::ThresholdedRelu(a) => {
            let alpha = F::c(a.alpha.into());
            x.mapv(|v| if v > alpha { v } else { zero })
        }
        Op::Selu(a) => {
            let (alpha, gamma) = (F::c(a.alpha.into()), F::c(a.gamma.into()));
            x.mapv(|v| {
                if v > zero {
                    gamma * v
                } else {
                    gamma * (alpha * v.exp() - alpha)
                }
            })
        }
        Op::Gelu(a) => match a.approximate {
            GeluApproximation::None => {
                let inv_sqrt2 = F::c(std::f64::consts::FRAC_1_SQRT_2);
                x.mapv(|v| F::c(0.5) * v * (one + erf(v * inv_sqrt2)))
            }
            GeluApproximation::Tanh => {
                let k = F::c((2.0 / std::f64::consts::PI).sqrt());
                x.mapv(|v| F::c(0.5) * v * (one + (k * (v + F::c(0.044715) * v * v * v)).tanh()))
            }
        },
        other => {
            return Err(format!(
                "{} is not a one-input elementwise op",
                other.name()
            ));
        }
    })
}

/// Applies the activation a Conv, ConvTranspose or Linear fused (float outputs only).
pub fn fused_activation(activation: Option<FusedActivation>, y: Tensor) -> Result<Tensor, String> {
    let Some(activation) = activation else {
        return Ok(y);
    };
    let dtype = y.dtype();
    dispatch_real!(dtype, F => {
        let (zero, one) = (F::ZERO, F::ONE);
        // Same comparisons as Relu and Clip, so NaN behaves as it did unfused.
        let clamp = |lo: F, hi: F| move |v: F| {
            let v = if v < lo { lo } else { v };
            if v > hi { hi } else { v }
        };
        let x = array_of::<F>(&y);
        let out = match activation {
            FusedActivation::Relu => x.mapv(|v| if v > zero { v } else { zero }),
            FusedActivation::Relu6 => x.mapv(clamp(zero, F::c(6.0))),
            FusedActivation::ReluN1To1 => x.mapv(clamp(-one, one)),
            FusedActivation::Tanh => x.mapv(F::tanh),
            FusedActivation::Sigmoid => x.mapv(sigmoid),
            FusedActivation::HardSwish => return unary(&Op::HardSwish, &y),
        };
        Ok(restore(out, dtype))
    })
}

/// Clip: `min(max(x, lo), hi)` with absent bounds unbounded.
pub fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor, String> {
    let dtype = x.dtype();
    dispatch_number!(dtype, T => {
        let bound = |b: Option<&Tensor>, default: T| -> Result<T, String> {
            match b {
                None => Ok(default),
                Some(t) if t.is_empty() => Ok(default),
                Some(t) if t.len() == 1 => Ok(array_of::<T>(t).iter().copied().next().unwrap_or(default)),
                Some(t) => Err(format!("clip bounds must be scalars, got shape {:?}", t.shape())),
            }
        };
        let (lo, hi) = (bound(lo, T::LOWEST)?, bound(hi, T::HIGHEST)?);
        let y = array_of::<T>(x).mapv(|v| {
            let v = if v < lo { lo } else { v };
            if v > hi { hi } else { v }
        });
        Ok(restore(y, dtype))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::dtype::DType;
    use crate::ir::ops::AlphaAttrs;
    use ndarray::IxDyn;

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    #[test]
    fn round_is_half_to_even() {
        let y = unary(&Op::Round, &f32s(&[0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6])).unwrap();
        assert_eq!(y, f32s(&[0.0, 2.0, 2.0, -0.0, -2.0, 2.0, -3.0]));
    }

    #[test]
    fn activations_match_hand_values() {
        let y = unary(
            &Op::LeakyRelu(AlphaAttrs { alpha: 0.1 }),
            &f32s(&[-2.0, 3.0]),
        )
        .unwrap();
        assert_eq!(y, f32s(&[-0.2, 3.0]));
        let y = unary(&Op::HardSwish, &f32s(&[-4.0, 0.0, 1.0, 4.0])).unwrap();
        let want = [0.0, 0.0, 1.0 * (1.0 / 6.0 + 0.5), 4.0];
        for (a, b) in y.to_f64_vec().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let y = unary(&Op::Sigmoid, &f32s(&[-1000.0, 0.0, 1000.0])).unwrap();
        assert_eq!(y, f32s(&[0.0, 0.5, 1.0]));
    }

    #[test]
    fn swish_and_fused_activations_match_their_definitions() {
        let x = f32s(&[-7.0, -0.5, 0.5, 7.0]);
        let y = unary(&Op::Swish(AlphaAttrs { alpha: 2.0 }), &x).unwrap();
        for (a, v) in y.to_f64_vec().iter().zip([-7.0f64, -0.5, 0.5, 7.0]) {
            assert!((a - v / (1.0 + (-2.0 * v).exp())).abs() < 1e-6);
        }
        let relu6 = fused_activation(Some(FusedActivation::Relu6), x.clone()).unwrap();
        assert_eq!(relu6, f32s(&[0.0, 0.0, 0.5, 6.0]));
        let n1to1 = fused_activation(Some(FusedActivation::ReluN1To1), x.clone()).unwrap();
        assert_eq!(n1to1, f32s(&[-1.0, -0.5, 0.5, 1.0]));
        let hard_swish = fused_activation(Some(FusedActivation::HardSwish), x.clone()).unwrap();
        assert_eq!(hard_swish, unary(&Op::HardSwish, &x).unwrap());
        assert_eq!(fused_activation(None, x.clone()).unwrap(), x);
    }

    #[test]
    fn integer_ops_stay_integer() {
        let x = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[3]), vec![-3, 0, 5]).unwrap());
        let y = unary(&Op::Abs, &x).unwrap();
        assert_eq!(y.to_i64_vec().unwrap(), vec![3, 0, 5]);
        let y = clip(
            &x,
            Some(&Tensor::I32(ArrayD::from_elem(IxDyn(&[]), -1))),
            None,
        )
        .unwrap();
        assert_eq!(y.to_i64_vec().unwrap(), vec![-1, 0, 5]);
        assert!(unary(&Op::Exp, &x).is_err());
    }

    #[test]
    fn half_inputs_compute_in_f32_and_round_back() {
        let x = Tensor::F16(ArrayD::from_elem(IxDyn(&[2]), half::f16::from_f32(4.0)));
        let y = unary(&Op::Sqrt, &x).unwrap();
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(y.to_f64_vec(), vec![2.0, 2.0]);
    }
}
