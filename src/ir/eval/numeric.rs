//! Element traits and dtype dispatch for the kernels.
//!
//! Integer-capable kernels are generic over [`Number`] (every integer type,
//! f32, f64); float kernels over [`Real`] (f32, f64). f16 and bf16 compute in
//! f32 and are rounded back by [`restore`].

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};

use crate::ir::dtype::DType;
use crate::ir::tensor::{Element, Tensor};
use crate::with_tensor;

/// An element type kernels compute in, with ONNX integer semantics (wrapping
/// arithmetic, truncating division) and IEEE float semantics.
pub trait Number: Element + Send + Sync {
    const ZERO: Self;
    const ONE: Self;
    /// The smallest value (-inf for floats).
    const LOWEST: Self;
    /// The largest value (+inf for floats).
    const HIGHEST: Self;
    /// The tensor's array when it holds exactly this type.
    fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>>;
    fn add_wrapping(self, o: Self) -> Self;
    fn sub_wrapping(self, o: Self) -> Self;
    fn mul_wrapping(self, o: Self) -> Self;
    /// Integer division truncates; division by zero gives 0 for integers.
    fn div_onnx(self, o: Self) -> Self;
    /// Remainder with the sign of the divisor (`fmod == false`) or of the dividend.
    fn rem_onnx(self, o: Self, fmod: bool) -> Self;
    fn abs_wrapping(self) -> Self;
    fn neg_wrapping(self) -> Self;
    fn sign(self) -> Self;
    fn is_nan_value(self) -> bool;
    /// Converts with saturation to this type's range (NaN to 0 for integers).
    fn saturating_from_f64(v: f64) -> Self;

    /// The larger value; NaN if either is NaN.
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan_value() || o.is_nan_value() {
            if self.is_nan_value() { self } else { o }
        } else if o > self {
            o
        } else {
            self
        }
    }

    /// The smaller value; NaN if either is NaN.
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan_value() || o.is_nan_value() {
            if self.is_nan_value() { self } else { o }
        } else if o < self {
            o
        } else {
            self
        }
    }
}

macro_rules! int_number {
    ($t:ty, $variant:ident, signed = $signed:expr) => {
        impl Number for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>> {
                match t {
                    Tensor::$variant(a) => Some(a.view()),
                    _ => None,
                }
            }
            fn add_wrapping(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub_wrapping(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul_wrapping(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div_onnx(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            fn rem_onnx(self, o: Self, fmod: bool) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                let signs_differ = (r < 0) != (o < 0);
                if !fmod && r != 0 && signs_differ {
                    r.wrapping_add(o)
                } else {
                    r
                }
            }
            #[allow(unused_comparisons)]
            fn abs_wrapping(self) -> Self {
                if self < 0 { self.wrapping_neg() } else { self }
            }
            fn neg_wrapping(self) -> Self {
                self.wrapping_neg()
            }
            #[allow(unused_comparisons)]
            fn sign(self) -> Self {
                if $signed && self < 0 {
                    (0 as $t).wrapping_sub(1)
                } else if self > 0 {
                    1
                } else {
                    0
                }
            }
            fn is_nan_value(self) -> bool {
                false
            }
            fn saturating_from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}

int_number!(u8, U8, signed = false);
int_number!(i8, I8, signed = true);
int_number!(u16, U16, signed = false);
int_number!(i16, I16, signed = true);
int_number!(u32, U32, signed = false);
int_number!(i32, I32, signed = true);
int_number!(u64, U64, signed = false);
int_number!(i64, I64, signed = true);

macro_rules! float_number {
    ($t:ty, $variant:ident) => {
        impl Number for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>> {
                match t {
                    Tensor::$variant(a) => Some(a.view()),
                    _ => None,
                }
            }
            fn add_wrapping(self, o: Self) -> Self {
                self + o
            }
            fn sub_wrapping(self, o: Self) -> Self {
                self - o
            }
            fn mul_wrapping(self, o: Self) -> Self {
                self * o
            }
            fn div_onnx(self, o: Self) -> Self {
                self / o
            }
            fn rem_onnx(self, o: Self, fmod: bool) -> Self {
                let r = self % o;
                if !fmod && r != 0.0 && (r < 0.0) != (o < 0.0) {
                    r + o
                } else {
                    r
                }
            }
            fn abs_wrapping(self) -> Self {
                self.abs()
            }
            fn neg_wrapping(self) -> Self {
                -self
            }
            fn sign(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self
                }
            }
            fn is_nan_value(self) -> bool {
                self.is_nan()
            }
            fn saturating_from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}

float_number!(f32, F32);
float_number!(f64, F64);

/// A float type kernels compute in.
pub trait Real:
    Number
    + num_traits::Float
    + num_traits::FloatConst
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::iter::Sum
    + std::ops::AddAssign
{
    /// Converts an f64 constant (rounding for f32).
    fn c(v: f64) -> Self {
        <Self as Element>::from_f64(v)
    }
}

impl Real for f32 {}
impl Real for f64 {}

/// The tensor as an array of `T`: borrowed when it holds `T`, converted otherwise.
pub fn array_of<T: Number>(t: &Tensor) -> CowArray<'_, T, IxDyn> {
    match T::view(t) {
        Some(v) => v.into(),
        None => with_tensor!(t, a => a.mapv(|v| T::from_f64(v.to_f64()))).into(),
    }
}

/// Wraps a computed array as a tensor of `dtype`: f32 results of f16/bf16
/// inputs are rounded back, other types are wrapped as they are.
pub fn restore<T: Element>(a: ArrayD<T>, dtype: DType) -> Tensor {
    match (T::wrap(a), dtype) {
        (Tensor::F32(a), DType::F16) => Tensor::F16(a.mapv(f16::from_f32)),
        (Tensor::F32(a), DType::BF16) => Tensor::BF16(a.mapv(bf16::from_f32)),
        (t, _) => t,
    }
}

/// The dtype of the tensors that hold values of `dtype`: 4-bit integers are
/// held unpacked in i8/u8, every other type as itself.
pub fn held_dtype(dtype: DType) -> DType {
    match dtype {
        DType::I4 => DType::I8,
        DType::U4 => DType::U8,
        d => d,
    }
}

/// Runs `$body` with `$T` aliased to the type a numeric `$dtype` computes in
/// (f32 for f16/bf16). `$body` evaluates to `Result<Tensor, String>`.
macro_rules! dispatch_number {
    ($dtype:expr, $T:ident => $body:expr) => {{
        use $crate::ir::dtype::DType as D;
        match $dtype {
            D::U8 => {
                type $T = u8;
                $body
            }
            D::I8 => {
                type $T = i8;
                $body
            }
            D::U16 => {
                type $T = u16;
                $body
            }
            D::I16 => {
                type $T = i16;
                $body
            }
            D::U32 => {
                type $T = u32;
                $body
            }
            D::I32 => {
                type $T = i32;
                $body
            }
            D::U64 => {
                type $T = u64;
                $body
            }
            D::I64 => {
                type $T = i64;
                $body
            }
            D::F16 | D::BF16 | D::F32 => {
                type $T = f32;
                $body
            }
            D::F64 => {
                type $T = f64;
                $body
            }
            other => Err(format!("does not support {other} tensors")),
        }
    }};
}

/// Runs `$body` with `$F` aliased to the type a float `$dtype` computes in
/// (f64 for f64, f32 otherwise). `$body` evaluates to `Result<Tensor, String>`.
macro_rules! dispatch_real {
    ($dtype:expr, $F:ident => $body:expr) => {{
        use $crate::ir::dtype::DType as D;
        match $dtype {
            D::F16 | D::BF16 | D::F32 => {
                type $F = f32;
                $body
            }
            D::F64 => {
                type $F = f64;
                $body
            }
            other => Err(format!("expects a float tensor, got {other}")),
        }
    }};
}

/// Runs `$body` with `$x` and `$y` bound to the arrays of two tensors of the
/// same dtype (any dtype). `$body` evaluates to `Result<Tensor, String>`.
macro_rules! with_pair {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr) => {{
        use $crate::ir::tensor::Tensor as Tn;
        match ($a, $b) {
            (Tn::Bool($x), Tn::Bool($y)) => $body,
            (Tn::U8($x), Tn::U8($y)) => $body,
            (Tn::I8($x), Tn::I8($y)) => $body,
            (Tn::U16($x), Tn::U16($y)) => $body,
            (Tn::I16($x), Tn::I16($y)) => $body,
            (Tn::U32($x), Tn::U32($y)) => $body,
            (Tn::I32($x), Tn::I32($y)) => $body,
            (Tn::U64($x), Tn::U64($y)) => $body,
            (Tn::I64($x), Tn::I64($y)) => $body,
            (Tn::F16($x), Tn::F16($y)) => $body,
            (Tn::BF16($x), Tn::BF16($y)) => $body,
            (Tn::F32($x), Tn::F32($y)) => $body,
            (Tn::F64($x), Tn::F64($y)) => $body,
            (a, b) => Err(format!(
                "operand dtypes differ: {} and {}",
                a.dtype(),
                b.dtype()
            )),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_remainder_follows_the_divisor_sign_unless_fmod() {
        assert_eq!((-7i32).rem_onnx(3, false), 2);
        assert_eq!((-7i32).rem_onnx(3, true), -1);
        assert_eq!(7i32.rem_onnx(-3, false), -2);
        assert_eq!(5u8.rem_onnx(0, false), 0);
        assert_eq!((-7.5f32).rem_onnx(2.0, false), 0.5);
    }

    #[test]
    fn integer_arithmetic_wraps_and_never_panics() {
        assert_eq!(i8::MIN.div_onnx(-1), i8::MIN);
        assert_eq!(i8::MIN.abs_wrapping(), i8::MIN);
        assert_eq!(3u8.sub_wrapping(4), 255);
        assert_eq!(1i64.div_onnx(0), 0);
    }

    #[test]
    fn min_max_propagate_nan() {
        assert!(f32::NAN.max_nan(1.0).is_nan());
        assert!(1.0f32.min_nan(f32::NAN).is_nan());
        assert_eq!(3i32.max_nan(-2), 3);
    }

    #[test]
    fn half_results_round_back() {
        let a = ArrayD::from_elem(IxDyn(&[1]), 0.1f32);
        assert_eq!(restore(a, DType::F16).dtype(), DType::F16);
    }
}
