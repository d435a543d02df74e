//! LSTM and GRU, unrolled over the (static) sequence into FULLY_CONNECTED,
//! SPLIT, LOGISTIC/TANH/RELU, MUL, ADD and SUB per step.
//!
//! TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM keeps its states in variable
//! tensors: they start at zero (non-zero defaults are not supported), are
//! not graph inputs, and carry over from one invocation to the next until
//! the caller resets them. An ONNX LSTM is a pure function of its inputs,
//! initial states included (Silero VAD feeds them as graph inputs and reads
//! Y_h/Y_c back), so the builtin would be wrong from the second invocation
//! on. The unrolled form is stateless, takes states from anywhere and gives
//! Y, Y_h and Y_c directly.
//!
//! The input projection of every step is one FULLY_CONNECTED over
//! `[seq*batch, input]` with both biases folded in; each step then adds the
//! recurrent projection of the previous hidden state.

use ndarray::{Axis, s};

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::ops::{Op, RnnAttrs, RnnDirection};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, ValueId};

use super::super::model::TensorId;
use super::super::schema as tfl;
use super::{Layout, Lowerer, dims_i32};

/// Unrolled steps (sequence length times directions) beyond which the graph
/// would grow unreasonably; such nodes are unsupported.
const MAX_STEPS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    fn activations(self) -> usize {
        match self {
            Cell::Lstm => 3,
            Cell::Gru => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    Sigmoid,
    Tanh,
    Relu,
}

impl Activation {
    fn code(self) -> tfl::BuiltinOperator {
        match self {
            Activation::Sigmoid => tfl::BuiltinOperator::LOGISTIC,
            Activation::Tanh => tfl::BuiltinOperator::TANH,
            Activation::Relu => tfl::BuiltinOperator::RELU,
        }
    }
}

/// What the lowering needs to know about one LSTM or GRU node.
struct Plan {
    cell: Cell,
    attrs: RnnAttrs,
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    /// Forward and/or reverse.
    directions: Vec<RnnDirection>,
    /// Per direction, in ONNX order (f, g, h for LSTM; f, g for GRU).
    activations: Vec<Vec<Activation>>,
}

fn plan(g: &Graph, node: &Node) -> std::result::Result<Plan, String> {
    let (cell, attrs) = match &node.op {
        Op::Lstm(a) => (Cell::Lstm, a.clone()),
        Op::Gru(a) => (Cell::Gru, a.clone()),
        other => return Err(format!("{} is not a recurrent op", other.name())),
    };
    let shape = |i: usize| node.input(i).and_then(|v| g.fact(v).shape.as_fixed());
    let x = shape(0).ok_or("X needs a static shape")?;
    let [a, b, input] = x[..] else {
        return Err(format!("X must be 3-D, got {x:?}"));
    };
    let (seq, batch) = if attrs.batch_first { (b, a) } else { (a, b) };
    let directions = match attrs.direction {
        RnnDirection::Bidirectional => vec![RnnDirection::Forward, RnnDirection::Reverse],
        d => vec![d],
    };
    let dirs = directions.len();
    let hidden = attrs.hidden_size;
    let gh = cell.gates() * hidden;
    if seq == 0 || batch == 0 || hidden == 0 {
        return Err("empty sequence, batch or hidden size".into());
    }
    if seq * dirs > MAX_STEPS {
        return Err(format!(
            "{seq} steps in {dirs} direction(s) would unroll into more than {MAX_STEPS} steps"
        ));
    }
    for (i, &v) in node.inputs.iter().enumerate() {
        let Some(v) = v else { continue };
        let value = g.value(v);
        let want = if i == 4 { DType::I32 } else { DType::F32 };
        if value.fact.dtype != Some(want) {
            return Err(format!(
                "'{}' is {}; TFLite's unrolled {} takes {} here",
                value.name,
                value.fact.dtype.map_or("unknown".into(), |d| d.name()),
                node.op.name(),
                want.name()
            ));
        }
    }
    for &v in &node.outputs {
        if g.fact(v).dtype != Some(DType::F32) {
            return Err(format!("output '{}' must be float32", g.value(v).name));
        }
    }
    let expect = |i: usize, want: &[usize], name: &str| -> std::result::Result<(), String> {
        match shape(i) {
            Some(s) if s == want => Ok(()),
            Some(s) => Err(format!("{name} has shape {s:?}, expected {want:?}")),
            None if node.input(i).is_none() => Ok(()),
            None => Err(format!("{name} needs a static shape")),
        }
    };
    expect(1, &[dirs, gh, input], "W")?;
    expect(2, &[dirs, gh, hidden], "R")?;
    expect(3, &[dirs, 2 * gh], "B")?;
    let state = if attrs.batch_first {
        [batch, dirs, hidden]
    } else {
        [dirs, batch, hidden]
    };
    expect(5, &state, "initial_h")?;
    if cell == Cell::Lstm {
        expect(6, &state, "initial_c")?;
        expect(7, &[dirs, 3 * hidden], "P")?;
    }
    if node.input(1).is_none() || node.input(2).is_none() {
        return Err("W and R are required".into());
    }
    if let Some(v) = node.input(4)
        && let Some(w) = g.weight_of(v)
    {
        let lens = Tensor::from_bytes(w.dtype, &w.shape, &w.data)
            .and_then(|t| t.to_i64_vec())
            .map_err(|e| e.to_string())?;
        if lens.len() != batch || lens.iter().any(|&l| l < 0 || l > seq as i64) {
            return Err(format!(
                "sequence_lens {lens:?} must hold {batch} lengths up to {seq}"
            ));
        }
    }
    if node.input(4).is_some() && shape(4) != Some(vec![batch]) {
        return Err(format!("sequence_lens must have shape [{batch}]"));
    }
    if cell == Cell::Lstm && node.outputs.len() > 3 || cell == Cell::Gru && node.outputs.len() > 2 {
        return Err("too many outputs".into());
    }
    let per_dir = cell.activations();
    let names: Vec<String> = if attrs.activations.is_empty() {
        match cell {
            Cell::Lstm => vec!["Sigmoid".into(), "Tanh".into(), "Tanh".into()],
            Cell::Gru => vec!["Sigmoid".into(), "Tanh".into()],
        }
    } else {
        attrs.activations.clone()
    };
    let parsed = names
        .iter()
        .map(|n| match n.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Activation::Sigmoid),
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            other => Err(format!(
                "activation '{other}' is not supported by the TFLite lowering (Sigmoid, Tanh, Relu are)"
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let activations = (0..dirs)
        .map(|d| match parsed.len() {
            n if n == per_dir * dirs => Ok(parsed[d * per_dir..(d + 1) * per_dir].to_vec()),
            n if n == per_dir => Ok(parsed.clone()),
            n => Err(format!("{n} activations for {dirs} direction(s)")),
        })
        .collect::<std::result::Result<_, String>>()?;
    if let Some(c) = attrs.clip
        && !(c > 0.0 && c.is_finite())
    {
        return Err(format!("clip {c} must be a positive number"));
    }
    Ok(Plan {
        cell,
        attrs,
        seq,
        batch,
        input,
        hidden,
        directions,
        activations,
    })
}

pub fn support(g: &Graph, node: &Node) -> Support {
    match plan(g, node) {
        Ok(_) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let p = plan(lx.g, node).map_err(|e| lx.error(e))?;
    Unroll::new(lx, node, p)?.run()
}

/// Emits the unrolled recurrence of one node.
struct Unroll<'a, 'g> {
    lx: &'a mut Lowerer<'g>,
    node: &'a Node,
    p: Plan,
    prefix: String,
}

const F32: tfl::TensorType = tfl::TensorType::FLOAT32;

/// A parameter slice: known at conversion time (folded there) or computed.
#[derive(Clone)]
enum Param {
    Const(ndarray::ArrayD<f32>),
    Tensor(TensorId, Vec<usize>),
}

impl<'a, 'g> Unroll<'a, 'g> {
    fn new(lx: &'a mut Lowerer<'g>, node: &'a Node, p: Plan) -> Result<Unroll<'a, 'g>> {
        let prefix = node.name.clone();
        Ok(Unroll {
            lx,
            node,
            p,
            prefix,
        })
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.prefix)
    }

    fn tensor(&mut self, suffix: &str, shape: &[usize]) -> TensorId {
        let name = self.name(suffix);
        self.lx.temp(&name, F32, dims_i32(shape))
    }

    /// `[batch, width]` float tensor.
    fn rows(&mut self, suffix: &str, width: usize) -> TensorId {
        let batch = self.p.batch;
        self.tensor(suffix, &[batch, width])
    }

    fn constant(&mut self, suffix: &str, data: ndarray::ArrayD<f32>) -> Result<TensorId> {
        let name = self.name(suffix);
        self.lx.const_tensor(&name, &Tensor::from_f32(data))
    }

    /// Rows `lo..hi` of direction `d` of input `i` (`[dirs, rows, cols]` or
    /// `[dirs, rows]`), as `[hi - lo, cols]` or `[hi - lo]`; zeros when the
    /// input is absent.
    fn param(&mut self, i: usize, d: usize, lo: usize, hi: usize, suffix: &str) -> Result<Param> {
        let Some(v) = self.node.input(i) else {
            return Ok(Param::Const(ndarray::ArrayD::zeros(ndarray::IxDyn(&[
                hi - lo
            ]))));
        };
        let shape = self.lx.shape(v)?;
        if let Some(t) = self.lx.constant(v)? {
            let data = t.to_f32();
            let part = data
                .index_axis(Axis(0), d)
                .slice_axis(Axis(0), (lo..hi).into())
                .to_owned();
            return Ok(Param::Const(part));
        }
        let x = self.lx.operand(v, Layout::Source)?;
        let mut begin = vec![d, lo];
        let mut size = vec![1, hi - lo];
        begin.extend(shape.iter().skip(2).map(|_| 0));
        size.extend(shape.iter().skip(2));
        let begin_t = self
            .lx
            .const_i32(&self.name(&format!("{suffix}_begin")), &dims_i32(&begin));
        let size_t = self
            .lx
            .const_i32(&self.name(&format!("{suffix}_size")), &dims_i32(&size));
        let sliced = self.tensor(&format!("{suffix}_slice"), &size);
        self.lx.op(
            tfl::BuiltinOperator::SLICE,
            vec![Some(x), Some(begin_t), Some(size_t)],
            vec![sliced],
            tfl::BuiltinOptionsT::SliceOptions(Box::default()),
        );
        let out_shape = size[1..].to_vec();
        let out = self.reshape(sliced, &out_shape, suffix);
        Ok(Param::Tensor(out, out_shape))
    }

    fn materialize(&mut self, p: &Param, suffix: &str) -> Result<TensorId> {
        match p {
            Param::Const(a) => self.constant(suffix, a.clone()),
            Param::Tensor(t, _) => Ok(*t),
        }
    }

    /// `a + b` (`mask` multiplies `b` first), folded when both are constants.
    fn combine(
        &mut self,
        a: &Param,
        b: &Param,
        mask: Option<&ndarray::ArrayD<f32>>,
        suffix: &str,
    ) -> Result<Param> {
        match (a, b) {
            (Param::Const(x), Param::Const(y)) => {
                let y = match mask {
                    Some(m) => y * m,
                    None => y.clone(),
                };
                Ok(Param::Const(x + &y))
            }
            _ => {
                let shape = match (a, b) {
                    (Param::Tensor(_, s), _) | (_, Param::Tensor(_, s)) => s.clone(),
                    _ => unreachable!("one side is computed"),
                };
                let mut y = self.materialize(b, &format!("{suffix}_b"))?;
                if let Some(m) = mask {
                    let m = self.constant(&format!("{suffix}_mask"), m.clone())?;
                    let out = self.tensor(&format!("{suffix}_masked"), &shape);
                    self.lx.op(
                        tfl::BuiltinOperator::MUL,
                        vec![Some(y), Some(m)],
                        vec![out],
                        tfl::BuiltinOptionsT::MulOptions(Box::default()),
                    );
                    y = out;
                }
                let x = self.materialize(a, &format!("{suffix}_a"))?;
                let out = self.tensor(suffix, &shape);
                self.lx.op(
                    tfl::BuiltinOperator::ADD,
                    vec![Some(x), Some(y)],
                    vec![out],
                    tfl::BuiltinOptionsT::AddOptions(Box::default()),
                );
                Ok(Param::Tensor(out, shape))
            }
        }
    }

    fn binary(
        &mut self,
        code: tfl::BuiltinOperator,
        a: TensorId,
        b: TensorId,
        suffix: &str,
        width: usize,
    ) -> TensorId {
        let out = self.rows(suffix, width);
        let options = match code {
            tfl::BuiltinOperator::ADD => tfl::BuiltinOptionsT::AddOptions(Box::default()),
            tfl::BuiltinOperator::SUB => tfl::BuiltinOptionsT::SubOptions(Box::default()),
            tfl::BuiltinOperator::MUL => tfl::BuiltinOptionsT::MulOptions(Box::default()),
            _ => tfl::BuiltinOptionsT::NONE,
        };
        self.lx.op(code, vec![Some(a), Some(b)], vec![out], options);
        out
    }

    fn add(&mut self, a: TensorId, b: TensorId, suffix: &str) -> TensorId {
        let h = self.p.hidden;
        self.binary(tfl::BuiltinOperator::ADD, a, b, suffix, h)
    }

    fn mul(&mut self, a: TensorId, b: TensorId, suffix: &str) -> TensorId {
        let h = self.p.hidden;
        self.binary(tfl::BuiltinOperator::MUL, a, b, suffix, h)
    }

    fn sub(&mut self, a: TensorId, b: TensorId, suffix: &str) -> TensorId {
        let h = self.p.hidden;
        self.binary(tfl::BuiltinOperator::SUB, a, b, suffix, h)
    }

    fn activate(&mut self, act: Activation, x: TensorId, suffix: &str) -> TensorId {
        let out = self.rows(suffix, self.p.hidden);
        self.lx.op(
            act.code(),
            vec![Some(x)],
            vec![out],
            tfl::BuiltinOptionsT::NONE,
        );
        out
    }

    /// ONNX `clip` bounds every gate's input to its activation.
    fn clip(
        &mut self,
        x: TensorId,
        bounds: Option<(TensorId, TensorId)>,
        suffix: &str,
    ) -> TensorId {
        let Some((lo, hi)) = bounds else { return x };
        let h = self.p.hidden;
        let upper = self.binary(
            tfl::BuiltinOperator::MINIMUM,
            x,
            hi,
            &format!("{suffix}_clip_hi"),
            h,
        );
        self.binary(
            tfl::BuiltinOperator::MAXIMUM,
            upper,
            lo,
            &format!("{suffix}_clip"),
            h,
        )
    }

    /// `x · wᵀ (+ bias)` for `x: [rows, in]`, `w: [out, in]`.
    fn fully_connected(
        &mut self,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        rows: usize,
        out: usize,
        suffix: &str,
    ) -> TensorId {
        let y = self.tensor(suffix, &[rows, out]);
        self.lx.op(
            tfl::BuiltinOperator::FULLY_CONNECTED,
            vec![Some(x), Some(w), bias],
            vec![y],
            tfl::BuiltinOptionsT::FullyConnectedOptions(Box::default()),
        );
        y
    }

    /// `x: [batch, parts*hidden]` split into `parts` tensors `[batch, hidden]`.
    fn split(&mut self, x: TensorId, parts: usize, suffix: &str) -> Vec<TensorId> {
        let axis = self
            .lx
            .const_i32(&self.name(&format!("{suffix}_axis")), &[1]);
        let outs: Vec<TensorId> = (0..parts)
            .map(|i| self.rows(&format!("{suffix}{i}"), self.p.hidden))
            .collect();
        self.lx.op(
            tfl::BuiltinOperator::SPLIT,
            vec![Some(axis), Some(x)],
            outs.clone(),
            tfl::BuiltinOptionsT::SplitOptions(Box::new(tfl::SplitOptionsT {
                num_splits: parts as i32,
            })),
        );
        outs
    }

    fn reshape_into(&mut self, x: TensorId, out: TensorId, shape: &[usize]) {
        let target = self.lx.const_i32(&self.name("shape"), &dims_i32(shape));
        self.lx.op(
            tfl::BuiltinOperator::RESHAPE,
            vec![Some(x), Some(target)],
            vec![out],
            tfl::BuiltinOptionsT::NONE,
        );
    }

    fn reshape(&mut self, x: TensorId, shape: &[usize], suffix: &str) -> TensorId {
        let out = self.tensor(suffix, shape);
        self.reshape_into(x, out, shape);
        out
    }

    /// Splits `x` along `axis` into `n` slices without that axis (UNPACK),
    /// each of shape `slice`.
    fn unpack(
        &mut self,
        x: TensorId,
        n: usize,
        axis: usize,
        slice: &[usize],
        suffix: &str,
    ) -> Vec<TensorId> {
        if n == 1 {
            return vec![self.reshape(x, slice, suffix)];
        }
        let outs: Vec<TensorId> = (0..n)
            .map(|i| self.tensor(&format!("{suffix}{i}"), slice))
            .collect();
        self.lx.op(
            tfl::BuiltinOperator::UNPACK,
            vec![Some(x)],
            outs.clone(),
            tfl::BuiltinOptionsT::UnpackOptions(Box::new(tfl::UnpackOptionsT {
                num: n as i32,
                axis: axis as i32,
            })),
        );
        outs
    }

    /// Stacks `[batch, hidden]` tensors along `axis` into `out` of `shape`
    /// (PACK, then a RESHAPE when `shape` groups the stacked axis).
    fn stack_into(&mut self, parts: &[TensorId], axis: usize, out: TensorId, shape: &[usize]) {
        if parts.len() == 1 {
            self.reshape_into(parts[0], out, shape);
            return;
        }
        let (batch, hidden) = (self.p.batch, self.p.hidden);
        let mut packed_shape = vec![batch, hidden];
        packed_shape.insert(axis, parts.len());
        let packed = if packed_shape == shape {
            out
        } else {
            self.tensor("stacked", &packed_shape)
        };
        self.lx.op(
            tfl::BuiltinOperator::PACK,
            parts.iter().map(|&t| Some(t)).collect(),
            vec![packed],
            tfl::BuiltinOptionsT::PackOptions(Box::new(tfl::PackOptionsT {
                values_count: parts.len() as i32,
                axis: axis as i32,
            })),
        );
        if packed != out {
            self.reshape_into(packed, out, shape);
        }
    }

    fn is_used(&self, v: ValueId) -> bool {
        let g = self.lx.g;
        g.outputs.contains(&v) || g.nodes().any(|(_, n)| n.inputs.contains(&Some(v)))
    }

    /// The initial state input `i` split per direction (zeros when absent).
    fn initial_state(&mut self, i: usize, name: &str) -> Result<Vec<TensorId>> {
        let (dirs, batch, hidden) = (self.p.directions.len(), self.p.batch, self.p.hidden);
        let dir_axis = usize::from(self.p.attrs.batch_first);
        let Some(v) = self.node.input(i) else {
            let zeros = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[batch, hidden]));
            let t = self.constant(&format!("{name}_zero"), zeros)?;
            return Ok(vec![t; dirs]);
        };
        if let Some(t) = self.lx.constant(v)? {
            let data = t.to_f32();
            return (0..dirs)
                .map(|d| {
                    let part = data.index_axis(Axis(dir_axis), d).to_owned();
                    self.constant(&format!("{name}{d}"), part)
                })
                .collect();
        }
        let x = self.lx.operand(v, Layout::Source)?;
        Ok(self.unpack(x, dirs, dir_axis, &[batch, hidden], name))
    }

    /// Per time step, `[batch, 1]` booleans telling which sequences are
    /// still running (`None`: all of them, at every step).
    fn step_masks(&mut self) -> Result<Vec<Option<TensorId>>> {
        let (seq, batch) = (self.p.seq, self.p.batch);
        let Some(v) = self.node.input(4) else {
            return Ok(vec![None; seq]);
        };
        if let Some(t) = self.lx.constant(v)? {
            let lens = t.to_i64_vec().map_err(|e| self.lx.error(e.to_string()))?;
            if lens.iter().all(|&l| l == seq as i64) {
                return Ok(vec![None; seq]);
            }
            return (0..seq)
                .map(|t| {
                    let valid: Vec<bool> = lens.iter().map(|&l| (t as i64) < l).collect();
                    let data = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[batch, 1]), valid)
                        .map_err(|e| self.lx.error(e.to_string()))?;
                    let name = self.name(&format!("t{t}_valid"));
                    self.lx.const_tensor(&name, &Tensor::Bool(data)).map(Some)
                })
                .collect();
        }
        let lens = self.lx.operand(v, Layout::Source)?;
        (0..seq)
            .map(|t| {
                let name = self.name(&format!("t{t}"));
                let step = self.lx.const_i32(&name, &[t as i32]);
                let valid = self.lx.temp(
                    &format!("{name}_valid_rows"),
                    tfl::TensorType::BOOL,
                    vec![batch as i32],
                );
                self.lx.op(
                    tfl::BuiltinOperator::LESS,
                    vec![Some(step), Some(lens)],
                    vec![valid],
                    tfl::BuiltinOptionsT::LessOptions(Box::default()),
                );
                let out = self.lx.temp(
                    &format!("{name}_valid"),
                    tfl::TensorType::BOOL,
                    vec![batch as i32, 1],
                );
                self.reshape_into(valid, out, &[batch, 1]);
                Ok(Some(out))
            })
            .collect()
    }

    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId, suffix: &str) -> TensorId {
        let out = self.rows(suffix, self.p.hidden);
        self.lx.op(
            tfl::BuiltinOperator::SELECT_V2,
            vec![Some(cond), Some(a), Some(b)],
            vec![out],
            tfl::BuiltinOptionsT::SelectV2Options(Box::default()),
        );
        out
    }

    fn run(mut self) -> Result<()> {
        let p = &self.p;
        let (seq, batch, input, hidden) = (p.seq, p.batch, p.input, p.hidden);
        let dirs = p.directions.len();
        let cell = p.cell;
        let gh = cell.gates() * hidden;
        let batch_first = p.attrs.batch_first;

        let has_peepholes = cell == Cell::Lstm && self.node.input(7).is_some();

        let x_src = self
            .node
            .input(0)
            .ok_or_else(|| self.lx.error("X is required"))?;
        let x = self.lx.operand(x_src, Layout::Source)?;
        let x2d = self.reshape(x, &[seq * batch, input], "x_rows");

        let h0 = self.initial_state(5, "h0")?;
        let c0 = if cell == Cell::Lstm {
            self.initial_state(6, "c0")?
        } else {
            h0.clone()
        };
        let clip = match self.p.attrs.clip {
            Some(c) => {
                let lo = self.lx.const_f32_scalar(&self.name("clip_lo"), -c);
                let hi = self.lx.const_f32_scalar(&self.name("clip_hi"), c);
                Some((lo, hi))
            }
            None => None,
        };
        let one = self.lx.const_f32_scalar(&self.name("one"), 1.0);

        let masks = self.step_masks()?;
        let zeros = {
            let z = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[batch, hidden]));
            self.constant("zeros", z)?
        };

        // hs[d][t]: the hidden state after time step t.
        let mut hs: Vec<Vec<TensorId>> = Vec::with_capacity(dirs);
        let mut last_h = Vec::with_capacity(dirs);
        let mut last_c = Vec::with_capacity(dirs);
        for (d, &direction) in self.p.directions.clone().iter().enumerate() {
            let tag = |s: &str| format!("d{d}_{s}");
            let acts = self.p.activations[d].clone();
            let lbr = cell == Cell::Gru && self.p.attrs.linear_before_reset;
            let wb = self.param(3, d, 0, gh, &tag("wb"))?;
            let rb = self.param(3, d, gh, 2 * gh, &tag("rb"))?;
            // Both biases go into the input projection, except GRU's Rbh
            // under linear_before_reset, which the reset gate scales: it
            // becomes the bias of the recurrent projection's h part.
            let (input_bias, recurrent_bias) = if lbr {
                let mut zr = ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[gh]));
                zr.slice_mut(s![2 * hidden..]).fill(0.0);
                let h_only = zr.mapv(|m| 1.0 - m);
                let zero = Param::Const(ndarray::ArrayD::zeros(ndarray::IxDyn(&[gh])));
                let input_bias = self.combine(&wb, &rb, Some(&zr), &tag("bias"))?;
                let rec = self.combine(&zero, &rb, Some(&h_only), &tag("rbias"))?;
                (input_bias, Some(self.materialize(&rec, &tag("rbias"))?))
            } else {
                (self.combine(&wb, &rb, None, &tag("bias"))?, None)
            };
            let w_d = self.param(1, d, 0, gh, &tag("w"))?;
            let w_t = self.materialize(&w_d, &tag("w"))?;
            let bias_t = self.materialize(&input_bias, &tag("bias"))?;
            let xw = self.fully_connected(x2d, w_t, Some(bias_t), seq * batch, gh, &tag("xw"));
            let steps_shape = if batch_first {
                [batch, seq, gh]
            } else {
                [seq, batch, gh]
            };
            let xw = self.reshape(xw, &steps_shape, &tag("xw_steps"));
            let xw_steps = self.unpack(
                xw,
                seq,
                usize::from(batch_first),
                &[batch, gh],
                &tag("xw_t"),
            );

            let (r_main, r_hidden) = if cell == Cell::Gru && !lbr {
                let zr = self.param(2, d, 0, 2 * hidden, &tag("r_zr"))?;
                let hh = self.param(2, d, 2 * hidden, gh, &tag("r_h"))?;
                (
                    self.materialize(&zr, &tag("r_zr"))?,
                    Some(self.materialize(&hh, &tag("r_h"))?),
                )
            } else {
                let r = self.param(2, d, 0, gh, &tag("r"))?;
                (self.materialize(&r, &tag("r"))?, None)
            };
            let peephole = if has_peepholes {
                let mut parts = [TensorId(0); 3];
                for (k, name) in ["p_i", "p_o", "p_f"].into_iter().enumerate() {
                    let part = self.param(7, d, k * hidden, (k + 1) * hidden, &tag(name))?;
                    parts[k] = self.materialize(&part, &tag(name))?;
                }
                Some(parts)
            } else {
                None
            };

            let mut h = h0[d];
            let mut c = c0[d];
            let mut outs = vec![h; seq];
            for step in 0..seq {
                let t = if direction == RnnDirection::Reverse {
                    seq - 1 - step
                } else {
                    step
                };
                let st = |s: &str| format!("d{d}_t{t}_{s}");
                let (h_prev, c_prev) = (h, c);
                match cell {
                    Cell::Lstm => {
                        let rec = self.fully_connected(h, r_main, None, batch, gh, &st("rec"));
                        let pre = self.binary(
                            tfl::BuiltinOperator::ADD,
                            xw_steps[t],
                            rec,
                            &st("pre"),
                            gh,
                        );
                        let [gi, go, gf, gc] = self.split(pre, 4, &st("gate"))[..] else {
                            unreachable!("four gates")
                        };
                        let peek = |this: &mut Self,
                                    gate: TensorId,
                                    k: usize,
                                    state: TensorId,
                                    name: &str| {
                            match peephole {
                                Some(pp) => {
                                    let m = this.mul(pp[k], state, &st(&format!("{name}_peep")));
                                    this.add(gate, m, &st(&format!("{name}_with_peep")))
                                }
                                None => gate,
                            }
                        };
                        let gi = peek(&mut self, gi, 0, c, "i");
                        let gi = self.clip(gi, clip, &st("i"));
                        let i = self.activate(acts[0], gi, &st("i_act"));
                        let f = if self.p.attrs.input_forget {
                            self.sub(one, i, &st("f_act"))
                        } else {
                            let gf = peek(&mut self, gf, 2, c, "f");
                            let gf = self.clip(gf, clip, &st("f"));
                            self.activate(acts[0], gf, &st("f_act"))
                        };
                        let gc = self.clip(gc, clip, &st("c"));
                        let cand = self.activate(acts[1], gc, &st("c_act"));
                        let kept = self.mul(f, c, &st("c_kept"));
                        let added = self.mul(i, cand, &st("c_added"));
                        c = self.add(kept, added, &st("c"));
                        let go = peek(&mut self, go, 1, c, "o");
                        let go = self.clip(go, clip, &st("o"));
                        let o = self.activate(acts[0], go, &st("o_act"));
                        let hc = self.activate(acts[2], c, &st("h_act"));
                        h = self.mul(o, hc, &st("h"));
                    }
                    Cell::Gru => {
                        let [xz, xr, xh] = self.split(xw_steps[t], 3, &st("xgate"))[..] else {
                            unreachable!("three gates")
                        };
                        let width = if lbr { gh } else { 2 * hidden };
                        let rec = self.fully_connected(
                            h,
                            r_main,
                            recurrent_bias,
                            batch,
                            width,
                            &st("rec"),
                        );
                        let parts = self.split(rec, width / hidden, &st("rgate"));
                        let gz = self.add(xz, parts[0], &st("z_pre"));
                        let gz = self.clip(gz, clip, &st("z"));
                        let z = self.activate(acts[0], gz, &st("z_act"));
                        let gr = self.add(xr, parts[1], &st("r_pre"));
                        let gr = self.clip(gr, clip, &st("r"));
                        let reset = self.activate(acts[0], gr, &st("r_act"));
                        let gh_pre = if let Some(r_h) = r_hidden {
                            let rh = self.mul(reset, h, &st("reset_h"));
                            let rec_h =
                                self.fully_connected(rh, r_h, None, batch, hidden, &st("rec_h"));
                            self.add(xh, rec_h, &st("h_pre"))
                        } else {
                            let rec_h = self.mul(reset, parts[2], &st("reset_rec"));
                            self.add(xh, rec_h, &st("h_pre"))
                        };
                        let gh_pre = self.clip(gh_pre, clip, &st("hh"));
                        let cand = self.activate(acts[1], gh_pre, &st("hh_act"));
                        // (1 - z) * cand + z * h == cand + z * (h - cand)
                        let diff = self.sub(h, cand, &st("h_diff"));
                        let moved = self.mul(z, diff, &st("h_moved"));
                        h = self.add(cand, moved, &st("h"));
                    }
                }
                outs[t] = h;
                if let Some(valid) = masks[t] {
                    // Past a sequence's end the state holds and Y is zero.
                    outs[t] = self.select(valid, h, zeros, &st("y"));
                    h = self.select(valid, h, h_prev, &st("h_kept"));
                    if cell == Cell::Lstm {
                        c = self.select(valid, c, c_prev, &st("c_kept"));
                    }
                }
            }
            hs.push(outs);
            last_h.push(h);
            last_c.push(c);
        }

        let state_axis = usize::from(batch_first);
        let state_shape = if batch_first {
            vec![batch, dirs, hidden]
        } else {
            vec![dirs, batch, hidden]
        };
        let outputs = self.node.outputs.clone();
        if let Some(&y) = outputs.first()
            && self.is_used(y)
        {
            // Stack (t, d) in order along the sequence axis, then split it.
            let order: Vec<TensorId> = (0..seq)
                .flat_map(|t| hs.iter().map(move |h| h[t]))
                .collect();
            let shape = if batch_first {
                vec![batch, seq, dirs, hidden]
            } else {
                vec![seq, dirs, batch, hidden]
            };
            let out = self.lx.define(y, Layout::Source)?;
            self.stack_into(&order, state_axis, out, &shape);
        }
        for (k, last) in [(1, &last_h), (2, &last_c)] {
            if let Some(&v) = outputs.get(k)
                && self.is_used(v)
            {
                let out = self.lx.define(v, Layout::Source)?;
                let last = last.clone();
                self.stack_into(&last, state_axis, out, &state_shape);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::{LowerOptions, lower as lower_graph};
    use crate::ir::text::parse;

    const LSTM: &str = "{\"hidden_size\":2,\"direction\":\"DIR\",\"activations\":ACTS,\"activation_alpha\":[],\"activation_beta\":[],\"clip\":null,\"batch_first\":false,\"input_forget\":false,\"linear_before_reset\":false}";

    fn graph(direction: &str, activations: &str, seq: usize, state_inputs: bool) -> Graph {
        let dirs = if direction == "Bidirectional" { 2 } else { 1 };
        let attrs = LSTM.replace("DIR", direction).replace("ACTS", activations);
        let ones = |n: usize| format!("[{}]", vec!["0.5"; n].join(","));
        let (state_decl, states) = if state_inputs {
            (
                format!("  input h0: f32[{dirs},1,2]\n  input c0: f32[{dirs},1,2]\n"),
                "h0, c0",
            )
        } else {
            (String::new(), "_, _")
        };
        parse(&format!(
            "graph g {{
  input x: f32[{seq},1,3]
{state_decl}  weight w: f32[{dirs},8,3] = {}
  weight r: f32[{dirs},8,2] = {}
  node l: y: f32[{seq},{dirs},1,2], yh: f32[{dirs},1,2], yc: f32[{dirs},1,2] = Lstm {attrs} (x, w, r, _, _, {states})
  output y, yh, yc
}}",
            ones(dirs * 24),
            ones(dirs * 16)
        ))
        .unwrap()
    }

    fn count(model: &crate::formats::tflite::model::TflModel, code: tfl::BuiltinOperator) -> usize {
        model.operators.iter().filter(|o| o.code == code).count()
    }

    #[test]
    fn lstm_unrolls_into_stateless_builtins() {
        let g = graph("Forward", "[]", 3, true);
        let node = g.nodes().next().unwrap().1;
        assert_eq!(support(&g, node), Support::Native);
        let model = lower_graph(&g, &LowerOptions::default()).unwrap();
        // One input projection, then one recurrent projection per step.
        assert_eq!(count(&model, tfl::BuiltinOperator::FULLY_CONNECTED), 4);
        assert_eq!(count(&model, tfl::BuiltinOperator::SPLIT), 3);
        assert_eq!(count(&model, tfl::BuiltinOperator::LOGISTIC), 9);
        assert_eq!(count(&model, tfl::BuiltinOperator::TANH), 6);
        assert_eq!(
            count(&model, tfl::BuiltinOperator::UNIDIRECTIONAL_SEQUENCE_LSTM),
            0
        );
        assert!(model.tensors.iter().all(|t| !t.is_variable));
        assert_eq!(model.outputs.len(), 3);
    }

    #[test]
    fn bidirectional_lstm_unpacks_states_and_stacks_outputs() {
        let g = graph("Bidirectional", "[]", 2, true);
        let model = lower_graph(&g, &LowerOptions::default()).unwrap();
        assert_eq!(count(&model, tfl::BuiltinOperator::FULLY_CONNECTED), 6);
        // h0 and c0 split per direction; steps of each direction's projection.
        assert_eq!(count(&model, tfl::BuiltinOperator::UNPACK), 4);
        // Y over (step, direction), Y_h and Y_c over directions.
        assert_eq!(count(&model, tfl::BuiltinOperator::PACK), 3);
    }

    #[test]
    fn unsupported_activations_and_lengths_say_why() {
        let g = graph("Forward", "[\"Sigmoid\",\"Elu\",\"Tanh\"]", 2, false);
        let node = g.nodes().next().unwrap().1;
        let Support::Unsupported(why) = support(&g, node) else {
            panic!("Elu is not supported")
        };
        assert!(why.contains("activation 'elu'"), "{why}");
        let g = graph("Forward", "[]", MAX_STEPS + 1, false);
        let node = g.nodes().next().unwrap().1;
        let Support::Unsupported(why) = support(&g, node) else {
            panic!("too long")
        };
        assert!(why.contains("would unroll"), "{why}");
    }
}
