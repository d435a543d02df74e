//! Numerical agreement between two tensors: the measure every oracle test and
//! accuracy check uses.

use super::dtype::DType;
use super::tensor::Tensor;

/// How far `actual` is from `expected`.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// Largest `|actual - expected|` over elements where both are finite.
    pub max_abs_diff: f64,
    /// Largest `|expected|` over finite elements (the output magnitude).
    pub magnitude: f64,
    /// Elements where exactly one side is NaN, or infinities differ.
    pub special_mismatches: usize,
    /// Signal-to-quantization-noise ratio in dB (infinite when identical).
    pub sqnr_db: f64,
}

impl Agreement {
    /// Error relative to the output magnitude (`max_abs_diff / magnitude`); when
    /// the expected output is all zeros, the absolute difference.
    pub fn relative_error(&self) -> f64 {
        if self.magnitude > 0.0 {
            self.max_abs_diff / self.magnitude
        } else {
            self.max_abs_diff
        }
    }

    /// True when no special values disagree and the relative error is within `tolerance`.
    pub fn within(&self, tolerance: f64) -> bool {
        self.special_mismatches == 0 && self.relative_error() <= tolerance
    }
}

/// Why two tensors cannot be compared element by element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Shape {
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    DType {
        actual: DType,
        expected: DType,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Shape { actual, expected } => {
                write!(f, "shape {actual:?}, expected {expected:?}")
            }
            Mismatch::DType { actual, expected } => {
                write!(f, "dtype {actual}, expected {expected}")
            }
        }
    }
}

/// Compares element by element; dtypes and shapes must match exactly.
pub fn compare(actual: &Tensor, expected: &Tensor) -> Result<Agreement, Mismatch> {
    if actual.dtype() != expected.dtype() {
        return Err(Mismatch::DType {
            actual: actual.dtype(),
            expected: expected.dtype(),
        });
    }
    if actual.shape() != expected.shape() {
        return Err(Mismatch::Shape {
            actual: actual.shape().to_vec(),
            expected: expected.shape().to_vec(),
        });
    }
    let (a, e) = (actual.to_f64_vec(), expected.to_f64_vec());
    let mut agreement = Agreement {
        max_abs_diff: 0.0,
        magnitude: 0.0,
        special_mismatches: 0,
        sqnr_db: f64::INFINITY,
    };
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(&e) {
        if x.is_finite() && y.is_finite() {
            let d = (x - y).abs();
            agreement.max_abs_diff = agreement.max_abs_diff.max(d);
            agreement.magnitude = agreement.magnitude.max(y.abs());
            signal += y * y;
            noise += d * d;
        } else if !(x.is_nan() && y.is_nan()) && x != y {
            agreement.special_mismatches += 1;
        }
    }
    if noise > 0.0 {
        agreement.sqnr_db = 10.0 * (signal / noise).log10();
    }
    Ok(agreement)
}

/// The tolerance that fits a dtype's precision when the reference computed in
/// that dtype: exact for integers and bools, about one unit in the last place
/// for half types, `float_tolerance` for f32/f64.
pub fn tolerance_for(dtype: DType, float_tolerance: f64) -> f64 {
    match dtype {
        DType::F16 => float_tolerance.max(1e-3),
        DType::BF16 => float_tolerance.max(8e-3),
        DType::F32 | DType::F64 => float_tolerance,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    #[test]
    fn relative_error_is_against_magnitude() {
        let a = compare(&f32s(&[10.0, 0.001]), &f32s(&[10.0, 0.0])).unwrap();
        assert!((a.relative_error() - 1e-4).abs() < 1e-9);
        assert!(a.within(1.1e-4));
        assert!(!a.within(0.9e-4));
    }

    #[test]
    fn nan_positions_must_match() {
        let a = compare(&f32s(&[f32::NAN, 1.0]), &f32s(&[f32::NAN, 1.0])).unwrap();
        assert!(a.within(0.0));
        let b = compare(&f32s(&[f32::NAN, 1.0]), &f32s(&[0.0, 1.0])).unwrap();
        assert_eq!(b.special_mismatches, 1);
        assert!(!b.within(1.0));
    }

    #[test]
    fn shape_and_dtype_must_match() {
        assert!(matches!(
            compare(&f32s(&[1.0]), &f32s(&[1.0, 2.0])),
            Err(Mismatch::Shape { .. })
        ));
        let i = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1]), vec![1]).unwrap());
        assert!(matches!(
            compare(&f32s(&[1.0]), &i),
            Err(Mismatch::DType { .. })
        ));
    }

    #[test]
    fn sqnr_of_small_noise() {
        let a = compare(&f32s(&[1.0, -1.0]), &f32s(&[1.1, -1.0])).unwrap();
        // signal 1.21 + 1, noise 0.01 -> 10*log10(221)
        assert!((a.sqnr_db - 23.44).abs() < 0.01, "{}", a.sqnr_db);
    }
}
