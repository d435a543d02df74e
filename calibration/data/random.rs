//! Random samples, only when asked for by name: ranges measured on noise
//! rarely match real inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use super::{Entry, InputSig, SigDim, Signature, Source};
use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;

/// Most elements one random input may have.
const MAX_ELEMENTS: usize = 1 << 28;

#[derive(Clone, Debug, PartialEq)]
pub struct RandomOptions {
    pub samples: usize,
    pub seed: u64,
    /// Sizes of symbolic dims by symbol name; unnamed ones are 1.
    pub symbols: BTreeMap<String, usize>,
    /// Floats are uniform in `[low, high)`.
    pub float_range: (f32, f32),
    /// Integers are uniform in `[low, high)`.
    pub int_range: (i64, i64),
}

impl Default for RandomOptions {
    fn default() -> RandomOptions {
        RandomOptions {
            samples: 16,
            seed: 0,
            symbols: BTreeMap::new(),
            float_range: (-1.0, 1.0),
            int_range: (0, 2),
        }
    }
}

pub(crate) struct Random {
    options: RandomOptions,
    inputs: Vec<(InputSig, DType, Vec<usize>)>,
}

impl Random {
    pub fn new(options: &RandomOptions, signature: &Signature) -> Result<Random> {
        let (lo, hi) = options.float_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(Error::Input(format!(
                "random float range [{lo}, {hi}) is empty or not finite"
            )));
        }
        let (lo, hi) = options.int_range;
        if lo >= hi {
            return Err(Error::Input(format!(
                "random int range [{lo}, {hi}) is empty"
            )));
        }
        let inputs = signature
            .inputs
            .iter()
            .map(|sig| {
                let dims = sig.dims.as_ref().ok_or_else(|| {
                    Error::Input(format!(
                        "input '{}' is unranked; random data needs a shape",
                        sig.name
                    ))
                })?;
                let shape: Vec<usize> = dims
                    .iter()
                    .map(|d| match d {
                        SigDim::Fixed(n) => *n,
                        SigDim::Symbol(s) => options.symbols.get(s).copied().unwrap_or(1),
                        SigDim::Any => 1,
                    })
                    .collect();
                let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if count.is_none_or(|c| c > MAX_ELEMENTS) {
                    return Err(Error::Input(format!(
                        "random input '{}' of shape {shape:?} is too large",
                        sig.name
                    )));
                }
                let dtype = sig.dtype.ok_or_else(|| {
                    Error::Input(format!(
                        "input '{}' has no known dtype; random data needs one",
                        sig.name
                    ))
                })?;
                if !matches!(
                    dtype,
                    DType::F32 | DType::F64 | DType::F16 | DType::BF16 | DType::Bool
                ) && !is_int(dtype)
                {
                    return Err(Error::Input(format!(
                        "input '{}' is {sig}; random data is made for numbers and bools only",
                        sig.name
                    )));
                }
                Ok((sig.clone(), dtype, shape))
            })
            .collect::<Result<_>>()?;
        Ok(Random {
            options: options.clone(),
            inputs,
        })
    }

    pub fn warning(&self) -> String {
        format!(
            "calibrating on {} samples of random data (seed {}): ranges measured on noise rarely match real inputs, so expect poor INT8 accuracy; use it to test the pipeline only",
            self.options.samples, self.options.seed
        )
    }
}

/// Whole-byte integers (random data has no packed 4-bit form).
fn is_int(d: DType) -> bool {
    d.is_integer() && !matches!(d, DType::I4 | DType::U4)
}

/// SplitMix64: a tiny, well-mixed generator, seeded per sample and input so
/// any sample can be made on its own.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Source for Random {
    fn len(&self) -> usize {
        self.options.samples
    }

    fn load(&self, index: usize) -> Result<Vec<Entry>> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(k, (sig, dtype, shape))| {
                let mut rng = SplitMix(
                    self.options.seed ^ ((index as u64) << 20) ^ (k as u64).wrapping_mul(0x51_7cc1),
                );
                rng.next();
                let count: usize = shape.iter().product();
                let (flo, fhi) = self.options.float_range;
                let (ilo, ihi) = self.options.int_range;
                let mut floats = || -> Vec<f64> {
                    (0..count)
                        .map(|_| f64::from(flo) + rng.unit() * f64::from(fhi - flo))
                        .collect()
                };
                let dim = IxDyn(shape);
                let tensor = match *dtype {
                    DType::F32 => Tensor::F32(array(dim, floats().into_iter().map(|v| v as f32))),
                    DType::F64 => Tensor::F64(array(dim, floats().into_iter())),
                    DType::F16 => Tensor::F16(array(dim, floats().into_iter().map(f16::from_f64))),
                    DType::BF16 => {
                        Tensor::BF16(array(dim, floats().into_iter().map(bf16::from_f64)))
                    }
                    DType::Bool => {
                        Tensor::Bool(array(dim, (0..count).map(|_| rng.next() & 1 == 1)))
                    }
                    dtype => {
                        let span = (ihi as i128 - ilo as i128) as u128;
                        let values: Vec<i64> = (0..count)
                            .map(|_| (ilo as i128 + (u128::from(rng.next()) % span) as i128) as i64)
                            .collect();
                        Tensor::from_i64(shape, values)?.cast(dtype)?
                    }
                };
                Ok(Entry {
                    input: sig.name.clone(),
                    tensor,
                    file: PathBuf::from(format!("<random sample {index}>")),
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("random data (seed {})", self.options.seed)
    }

    fn locate(&self, index: usize) -> String {
        format!("random sample {index}")
    }
}

fn array<T>(dim: IxDyn, values: impl Iterator<Item = T>) -> ArrayD<T> {
    let values: Vec<T> = values.collect();
    ArrayD::from_shape_vec(dim, values).expect("count is the shape's product")
}
