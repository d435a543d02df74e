//! LSTM and GRU with ONNX semantics: directions, activations (with their
//! alpha/beta), clip, layout, sequence_lens, initial states, peepholes,
//! `input_forget`, `linear_before_reset`.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix3, s};

use super::elementwise::sigmoid;
use super::numeric::{Real, array_of, restore};
use super::operands::{Args, element_count};
use crate::ir::ops::{RnnAttrs, RnnDirection};
use crate::ir::tensor::Tensor;

/// An activation function with its parameters.
#[derive(Clone, Copy)]
enum Activation {
    Sigmoid,
    Tanh,
    Relu,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Activation {
    /// Parses activation names, taking alpha and beta values in order for the
    /// functions that use them (ONNX defaults when the lists run out).
    fn parse_all(
        names: &[String],
        alphas: &[f32],
        betas: &[f32],
    ) -> Result<Vec<Activation>, String> {
        let mut alphas = alphas.iter().map(|&v| f64::from(v));
        let mut betas = betas.iter().map(|&v| f64::from(v));
        names
            .iter()
            .map(|name| {
                let mut alpha = |d: f64| alphas.next().unwrap_or(d);
                Ok(match name.to_ascii_lowercase().as_str() {
                    "sigmoid" => Activation::Sigmoid,
                    "tanh" => Activation::Tanh,
                    "relu" => Activation::Relu,
                    "affine" => Activation::Affine(alpha(1.0), betas.next().unwrap_or(0.0)),
                    "leakyrelu" => Activation::LeakyRelu(alpha(0.01)),
                    "thresholdedrelu" => Activation::ThresholdedRelu(alpha(1.0)),
                    "scaledtanh" => Activation::ScaledTanh(alpha(1.0), betas.next().unwrap_or(1.0)),
                    "hardsigmoid" => {
                        Activation::HardSigmoid(alpha(0.2), betas.next().unwrap_or(0.5))
                    }
                    "elu" => Activation::Elu(alpha(1.0)),
                    "softsign" => Activation::Softsign,
                    "softplus" => Activation::Softplus,
                    other => return Err(format!("unknown activation '{other}'")),
                })
            })
            .collect()
    }

    fn apply<F: Real>(self, x: F) -> F {
        let c = F::c;
        match self {
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(F::ZERO),
            Activation::Affine(a, b) => c(a) * x + c(b),
            Activation::LeakyRelu(a) => {
                if x < F::ZERO {
                    c(a) * x
                } else {
                    x
                }
            }
            Activation::ThresholdedRelu(a) => {
                if x > c(a) {
                    x
                } else {
                    F::ZERO
                }
            }
            Activation::ScaledTanh(a, b) => c(a) * (c(b) * x).tanh(),
            Activation::HardSigmoid(a, b) => (c(a) * x + c(b)).max(F::ZERO).min(F::ONE),
            Activation::Elu(a) => {
                if x < F::ZERO {
                    c(a) * (x.exp() - F::ONE)
                } else {
                    x
                }
            }
            Activation::Softsign => x / (F::ONE + x.abs()),
            Activation::Softplus => x.exp().ln_1p(),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    fn default_activations(self) -> Vec<String> {
        let names: &[&str] = match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// LSTM. Inputs: X, W, R, B?, sequence_lens?, initial_h?, initial_c?, P?.
/// Outputs: Y, Y_h, Y_c.
pub fn lstm(attrs: &RnnAttrs, args: &Args) -> Result<Vec<Tensor>, String> {
    recurrent(Cell::Lstm, attrs, args)
}

/// GRU. Inputs: X, W, R, B?, sequence_lens?, initial_h?. Outputs: Y, Y_h.
pub fn gru(attrs: &RnnAttrs, args: &Args) -> Result<Vec<Tensor>, String> {
    recurrent(Cell::Gru, attrs, args)
}

fn recurrent(cell: Cell, attrs: &RnnAttrs, args: &Args) -> Result<Vec<Tensor>, String> {
    let dtype = args.get(0)?.dtype();
    dispatch_real!(dtype, F => {
        let outputs = Recurrence::<F>::new(cell, attrs, args)?.run()?;
        Ok(outputs.into_iter().map(|a| restore(a, dtype)).collect())
    })
}

/// A 3-D view of an input that must have `shape`.
fn input3<F: Real>(
    args: &Args,
    i: usize,
    shape: [usize; 3],
    name: &str,
) -> Result<Option<ndarray::Array3<F>>, String> {
    let Some(t) = args.opt(i).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.shape() != shape {
        return Err(format!(
            "{name} has shape {:?}, expected {shape:?}",
            t.shape()
        ));
    }
    Ok(Some(
        array_of::<F>(t)
            .into_owned()
            .into_dimensionality::<Ix3>()
            .map_err(|e| e.to_string())?,
    ))
}

struct Recurrence<F: Real> {
    cell: Cell,
    hidden: usize,
    directions: Vec<RnnDirection>,
    activations: Vec<Vec<Activation>>,
    clip: Option<F>,
    input_forget: bool,
    linear_before_reset: bool,
    batch_first: bool,
    /// `[seq, batch, input]`
    x: ndarray::Array3<F>,
    w: ndarray::Array3<F>,
    r: ndarray::Array3<F>,
    /// `[dirs, 2 * gates * hidden]`
    b: Array2<F>,
    lengths: Vec<usize>,
    /// `[dirs, batch, hidden]`
    h0: ndarray::Array3<F>,
    c0: ndarray::Array3<F>,
    /// `[dirs, 3 * hidden]`
    p: Array2<F>,
}

impl<F: Real> Recurrence<F> {
    fn new(cell: Cell, attrs: &RnnAttrs, args: &Args) -> Result<Recurrence<F>, String> {
        let directions = match attrs.direction {
            RnnDirection::Bidirectional => vec![RnnDirection::Forward, RnnDirection::Reverse],
            d => vec![d],
        };
        let dirs = directions.len();
        let hidden = attrs.hidden_size;
        let gh = cell
            .gates()
            .checked_mul(hidden)
            .ok_or("hidden_size is too large")?;
        let x = args.get(0)?;
        let [a, b, input] = *x.shape() else {
            return Err(format!("X must be 3-D, got shape {:?}", x.shape()));
        };
        let (seq, batch) = if attrs.batch_first { (b, a) } else { (a, b) };
        element_count(&[seq, dirs, batch, gh])?;
        let x = array_of::<F>(x)
            .into_owned()
            .into_dimensionality::<Ix3>()
            .map_err(|e| e.to_string())?;
        let x = if attrs.batch_first {
            x.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
        } else {
            x
        };
        let w = input3::<F>(args, 1, [dirs, gh, input], "W")?.ok_or("W is required")?;
        let r = input3::<F>(args, 2, [dirs, gh, hidden], "R")?.ok_or("R is required")?;
        let b = match args.opt(3).filter(|t| !t.is_empty()) {
            Some(t) if t.shape() == [dirs, 2 * gh] => array_of::<F>(t)
                .into_owned()
                .into_dimensionality()
                .map_err(|e| e.to_string())?,
            Some(t) => {
                return Err(format!(
                    "B has shape {:?}, expected [{dirs}, {}]",
                    t.shape(),
                    2 * gh
                ));
            }
            None => Array2::zeros((dirs, 2 * gh)),
        };
        let lengths = match args.opt(4).filter(|t| !t.is_empty()) {
            Some(_) => {
                let l = args.ints(4)?;
                if l.len() != batch || l.iter().any(|&v| v < 0 || v as usize > seq) {
                    return Err(format!(
                        "sequence_lens {l:?} must hold {batch} lengths up to {seq}"
                    ));
                }
                l.into_iter().map(|v| v as usize).collect()
            }
            None => vec![seq; batch],
        };
        let state_shape = if attrs.batch_first {
            [batch, dirs, hidden]
        } else {
            [dirs, batch, hidden]
        };
        let state = |i: usize, name: &str| -> Result<ndarray::Array3<F>, String> {
            Ok(match input3::<F>(args, i, state_shape, name)? {
                Some(s) if attrs.batch_first => {
                    s.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
                }
                Some(s) => s,
                None => ndarray::Array3::zeros((dirs, batch, hidden)),
            })
        };
        let h0 = state(5, "initial_h")?;
        let c0 = if cell == Cell::Lstm {
            state(6, "initial_c")?
        } else {
            ndarray::Array3::zeros((dirs, batch, hidden))
        };
        let p = match args.opt(7).filter(|t| !t.is_empty() && cell == Cell::Lstm) {
            Some(t) if t.shape() == [dirs, 3 * hidden] => array_of::<F>(t)
                .into_owned()
                .into_dimensionality()
                .map_err(|e| e.to_string())?,
            Some(t) => {
                return Err(format!(
                    "P has shape {:?}, expected [{dirs}, {}]",
                    t.shape(),
                    3 * hidden
                ));
            }
            None => Array2::zeros((dirs, 3 * hidden)),
        };
        let names = if attrs.activations.is_empty() {
            cell.default_activations()
        } else {
            attrs.activations.clone()
        };
        let per_dir = cell.default_activations().len();
        let parsed =
            Activation::parse_all(&names, &attrs.activation_alpha, &attrs.activation_beta)?;
        let activations = (0..dirs)
            .map(|d| match parsed.len() {
                n if n == per_dir * dirs => Ok(parsed[d * per_dir..(d + 1) * per_dir].to_vec()),
                n if n == per_dir => Ok(parsed.clone()),
                n => Err(format!("{n} activations for {dirs} directions")),
            })
            .collect::<Result<_, String>>()?;
        Ok(Recurrence {
            cell,
            hidden,
            directions,
            activations,
            clip: attrs.clip.map(|c| F::c(c.into())),
            input_forget: attrs.input_forget,
            linear_before_reset: attrs.linear_before_reset,
            batch_first: attrs.batch_first,
            x,
            w,
            r,
            b,
            lengths,
            h0,
            c0,
            p,
        })
    }

    fn run(&self) -> Result<Vec<ArrayD<F>>, String> {
        let (seq, batch, _) = self.x.dim();
        let dirs = self.directions.len();
        let hdim = self.hidden;
        let mut y = ndarray::Array4::<F>::zeros((seq, dirs, batch, hdim));
        let mut y_h = ndarray::Array3::<F>::zeros((dirs, batch, hdim));
        let mut y_c = ndarray::Array3::<F>::zeros((dirs, batch, hdim));
        for (d, &direction) in self.directions.iter().enumerate() {
            let w = self.w.index_axis(Axis(0), d);
            let r = self.r.index_axis(Axis(0), d);
            let gh = self.cell.gates() * hdim;
            let wb = self.b.slice(s![d, ..gh]);
            let rb = self.b.slice(s![d, gh..]);
            // X · Wᵀ + Wb for every step and batch entry at once.
            let x2 = self
                .x
                .view()
                .into_shape_with_order((seq * batch, self.x.dim().2))
                .map_err(|e| e.to_string())?;
            let xw = (x2.dot(&w.t()) + wb).as_standard_layout().into_owned();
            for bi in 0..batch {
                let mut h = self.h0.slice(s![d, bi, ..]).to_owned();
                let mut c = self.c0.slice(s![d, bi, ..]).to_owned();
                let len = self.lengths[bi];
                for step in 0..len {
                    let t = if direction == RnnDirection::Reverse {
                        len - 1 - step
                    } else {
                        step
                    };
                    let xw_t = xw.row(t * batch + bi);
                    let rh = r.dot(&h) + rb;
                    match self.cell {
                        Cell::Lstm => {
                            self.lstm_step(d, xw_t.as_slice().expect("row"), &rh, &mut h, &mut c)
                        }
                        Cell::Gru => {
                            self.gru_step(d, xw_t.as_slice().expect("row"), r, &rb, &rh, &mut h)
                        }
                    }
                    y.slice_mut(s![t, d, bi, ..]).assign(&h);
                }
                y_h.slice_mut(s![d, bi, ..]).assign(&h);
                y_c.slice_mut(s![d, bi, ..]).assign(&c);
            }
        }
        let (y, y_h, y_c) = if self.batch_first {
            (
                y.permuted_axes([2, 0, 1, 3])
                    .as_standard_layout()
                    .into_owned()
                    .into_dyn(),
                y_h.permuted_axes([1, 0, 2])
                    .as_standard_layout()
                    .into_owned()
                    .into_dyn(),
                y_c.permuted_axes([1, 0, 2])
                    .as_standard_layout()
                    .into_owned()
                    .into_dyn(),
            )
        } else {
            (y.into_dyn(), y_h.into_dyn(), y_c.into_dyn())
        };
        let mut outputs = vec![y, y_h];
        if self.cell == Cell::Lstm {
            outputs.push(y_c);
        }
        Ok(outputs)
    }

    fn clipped(&self, v: F) -> F {
        match self.clip {
            Some(c) => v.max(-c).min(c),
            None => v,
        }
    }

    /// One LSTM step; gate order i, o, f, c; peepholes i, o, f.
    fn lstm_step(
        &self,
        d: usize,
        xw: &[F],
        rh: &ndarray::Array1<F>,
        h: &mut ndarray::Array1<F>,
        c: &mut ndarray::Array1<F>,
    ) {
        let n = self.hidden;
        let [f, g, hact] = [
            self.activations[d][0],
            self.activations[d][1],
            self.activations[d][2],
        ];
        let p = self.p.row(d);
        for j in 0..n {
            let pre = |gate: usize| xw[gate * n + j] + rh[gate * n + j];
            let c_prev = c[j];
            let i = f.apply(self.clipped(pre(0) + p[j] * c_prev));
            let forget = if self.input_forget {
                F::ONE - i
            } else {
                f.apply(self.clipped(pre(2) + p[2 * n + j] * c_prev))
            };
            let candidate = g.apply(self.clipped(pre(3)));
            let c_new = forget * c_prev + i * candidate;
            let o = f.apply(self.clipped(pre(1) + p[n + j] * c_new));
            c[j] = c_new;
            h[j] = o * hact.apply(c_new);
        }
    }

    /// One GRU step; gate order z, r, h.
    fn gru_step(
        &self,
        d: usize,
        xw: &[F],
        r: ArrayView2<F>,
        rb: &ndarray::ArrayView1<F>,
        rh: &ndarray::Array1<F>,
        h: &mut ndarray::Array1<F>,
    ) {
        let n = self.hidden;
        let [f, g] = [self.activations[d][0], self.activations[d][1]];
        let z: Vec<F> = (0..n)
            .map(|j| f.apply(self.clipped(xw[j] + rh[j])))
            .collect();
        let reset: Vec<F> = (0..n)
            .map(|j| f.apply(self.clipped(xw[n + j] + rh[n + j])))
            .collect();
        let candidate: Vec<F> = if self.linear_before_reset {
            (0..n)
                .map(|j| g.apply(self.clipped(xw[2 * n + j] + reset[j] * rh[2 * n + j])))
                .collect()
        } else {
            let rh_reset: ndarray::Array1<F> = h.iter().zip(&reset).map(|(&v, &q)| v * q).collect();
            let recurrent = r.slice(s![2 * n.., ..]).dot(&rh_reset);
            (0..n)
                .map(|j| g.apply(self.clipped(xw[2 * n + j] + recurrent[j] + rb[2 * n + j])))
                .collect()
        };
        for j in 0..n {
            h[j] = (F::ONE - z[j]) * candidate[j] + z[j] * h[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;
    use ndarray::IxDyn;

    fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn attrs(hidden: usize, direction: RnnDirection) -> RnnAttrs {
        RnnAttrs {
            hidden_size: hidden,
            direction,
            activations: vec![],
            activation_alpha: vec![],
            activation_beta: vec![],
            clip: None,
            batch_first: false,
            input_forget: false,
            linear_before_reset: false,
        }
    }

    #[test]
    fn lstm_one_step_matches_hand_computation() {
        let x = f32s(&[1, 1, 1], vec![1.0]);
        let w = f32s(&[1, 4, 1], vec![0.5, 0.5, 0.5, 0.5]);
        let r = f32s(&[1, 4, 1], vec![0.0; 4]);
        let a = attrs(1, RnnDirection::Forward);
        let op = Op::Lstm(a.clone());
        let inputs = [Some(&x), Some(&w), Some(&r)];
        let out = lstm(&a, &Args::new(&op, &inputs).unwrap()).unwrap();
        let s = 1.0 / (1.0 + (-0.5f64).exp());
        let c = s * 0.5f64.tanh();
        let h = s * c.tanh();
        assert!((out[1].to_f64_vec()[0] - h).abs() < 1e-6);
        assert!((out[2].to_f64_vec()[0] - c).abs() < 1e-6);
        assert_eq!(out[0].shape(), &[1, 1, 1, 1]);
    }

    #[test]
    fn bidirectional_gru_respects_sequence_lengths() {
        let x = f32s(&[3, 2, 1], vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let w = f32s(&[2, 3, 1], vec![0.1; 6]);
        let r = f32s(&[2, 3, 1], vec![0.2; 6]);
        let lens = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[2]), vec![3, 1]).unwrap());
        let a = attrs(1, RnnDirection::Bidirectional);
        let op = Op::Gru(a.clone());
        let inputs = [Some(&x), Some(&w), Some(&r), None, Some(&lens)];
        let out = gru(&a, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(out[0].shape(), &[3, 2, 2, 1]);
        let y = out[0].to_f64_vec();
        // Batch entry 1 has length 1: steps 1 and 2 stay zero in both directions.
        assert_eq!(y[2 * 4 + 1], 0.0);
        assert_eq!(y[4 + 3], 0.0);
        // Its reverse direction output at step 0 equals its final reverse state.
        assert_eq!(y[3], out[1].to_f64_vec()[3]);
    }
}
