//! Full-integer quantization of a lowered float model, following TFLite's
//! int8 specification: symmetric per-channel int8 filters, int32 biases,
//! asymmetric per-tensor int8 activations from the calibrated ranges, and
//! the fixed output parameters LOGISTIC, SOFTMAX and TANH require.
//!
//! Decisions are per IR node: a node runs in int8 when its op is eligible
//! ([`roles::eligible`]), the user did not keep it float, every operator it
//! was lowered to has an int8 kernel ([`kernels::int8_kernel`]) and every
//! float tensor it reads or writes has parameters. Anything else stays float,
//! with QUANTIZE / DEQUANTIZE where the two meet.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use super::kernels::{Int8Kernel, Output, int8_kernel};
use super::params::{
    ActParams, asymmetric_per_tensor, bias_int32, channel_index, symmetric_per_channel,
};
use super::roles;
use super::{Int8Options, IoType, NodeFilter};
use crate::calibration::calibrate::Calibration;
use crate::formats::tflite::model::{TensorId, TflModel, TflOperator, TflQuant, TflTensor};
use crate::formats::tflite::schema as tfl;
use crate::ir::error::{Error, Result};
use crate::ir::{Graph, NodeId, ValueId};

/// What the rewrite decided, for the simulation and the report.
#[derive(Clone, Debug, Default)]
pub struct Int8Summary {
    /// Nodes running in int8.
    pub int8_nodes: HashSet<NodeId>,
    /// Nodes left in float, with the reason.
    pub float_nodes: BTreeMap<String, String>,
    /// Parameters of every value some int8 operator reads or writes.
    pub value_params: HashMap<ValueId, ActParams>,
    /// Values stored in int8 (or uint8): every reader sees them rounded.
    /// The others are rounded only on their way into int8 nodes.
    pub stored_quantized: HashSet<ValueId>,
    /// Graph outputs the model returns in int8 or uint8 (`--output-type`).
    pub quantized_outputs: HashSet<ValueId>,
}

/// How a float tensor is held after the rewrite.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Held {
    Float,
    Int8,
    Uint8,
}

/// Rewrites `model`, lowered from `g`, to full-integer with `calibration`'s ranges.
pub fn quantize(
    model: &mut TflModel,
    g: &Graph,
    calibration: &Calibration,
    options: &Int8Options,
) -> Result<Int8Summary> {
    let mut rw = Rewriter::new(model, calibration);
    let groups = rw.groups();
    let nodes_by_name: HashMap<&str, NodeId> =
        g.nodes().map(|(id, n)| (n.name.as_str(), id)).collect();
    let mut summary = Int8Summary::default();

    // Decide node by node, in operator order: same-scale outputs take the
    // parameters their inputs ended with.
    let mut int8_ops = vec![false; rw.model.operators.len()];
    for (name, ops) in &groups {
        let Some(&id) = nodes_by_name.get(name.as_str()) else {
            continue;
        };
        let node = g.node(id);
        let why_not = if options.keep_float.matches(name) {
            Err("kept float by --keep-float".to_string())
        } else {
            roles::eligible(g, node).and_then(|()| rw.try_assign(ops))
        };
        match why_not {
            Ok(()) => {
                summary.int8_nodes.insert(id);
                for &i in ops {
                    int8_ops[i] = true;
                }
            }
            Err(why) => {
                summary.float_nodes.insert(name.clone(), why);
            }
        }
    }
    rw.rebuild(&int8_ops, options)?;
    rw.summarize(&mut summary);
    // A clamp folded into its int8 producer is int8 too.
    for op in &rw.folded_ops {
        if let Some(&id) = nodes_by_name.get(op.as_str())
            && summary.float_nodes.remove(op).is_some()
        {
            summary.int8_nodes.insert(id);
        }
    }
    rw.model.compact();
    Ok(summary)
}

struct Rewriter<'a> {
    model: &'a mut TflModel,
    /// The IR value each activation tensor holds.
    value_of: HashMap<TensorId, ValueId>,
    /// Parameters of float activation tensors (calibrated or propagated).
    params: HashMap<TensorId, ActParams>,
    held: HashMap<TensorId, Held>,
    /// Conversions made once per tensor: (tensor, target) -> converted.
    to_int8: HashMap<(TensorId, i32, u32), TensorId>,
    to_float: HashMap<TensorId, TensorId>,
    /// Values read in int8 through a QUANTIZE (not stored quantized).
    quantized_reads: HashSet<TensorId>,
    /// Output of a clamp folded into its producer -> the producer's output.
    folded: HashMap<TensorId, TensorId>,
    /// Source nodes of the folded clamps.
    folded_ops: Vec<String>,
    quantized_output_tensors: Vec<TensorId>,
    new_ops: Vec<TflOperator>,
}

impl<'a> Rewriter<'a> {
    fn new(model: &'a mut TflModel, calibration: &Calibration) -> Rewriter<'a> {
        let mut value_of = HashMap::new();
        let mut params = HashMap::new();
        for &(v, t) in &model.value_tensors {
            value_of.entry(t).or_insert(v);
            if model.tensor(t).dtype == tfl::TensorType::FLOAT32
                && let Some(range) = calibration.get(v).and_then(|r| r.range)
            {
                params.entry(t).or_insert_with(|| ActParams::of(&range));
            }
        }
        Rewriter {
            model,
            value_of,
            params,
            held: HashMap::new(),
            to_int8: HashMap::new(),
            to_float: HashMap::new(),
            quantized_reads: HashSet::new(),
            folded: HashMap::new(),
            folded_ops: Vec::new(),
            quantized_output_tensors: Vec::new(),
            new_ops: Vec::new(),
        }
    }

    /// Operator indices per source node, in first-operator order.
    fn groups(&self) -> Vec<(String, Vec<usize>)> {
        let mut order: Vec<(String, Vec<usize>)> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (i, op) in self.model.operators.iter().enumerate() {
            match at.get(op.source_node.as_str()) {
                Some(&k) => order[k].1.push(i),
                None => {
                    at.insert(op.source_node.as_str(), order.len());
                    order.push((op.source_node.clone(), vec![i]));
                }
            }
        }
        order
    }

    /// A non-constant tensor that is float32 in the lowered model (it may
    /// already have been made int8 by its producer).
    fn is_float_activation(&self, t: TensorId) -> bool {
        let tensor = self.model.tensor(t);
        tensor.data.is_none()
            && (tensor.dtype == tfl::TensorType::FLOAT32 || self.held(t) != Held::Float)
    }

    /// Gives every float tensor of `ops` int8 parameters, or says why it
    /// cannot (and leaves the parameters as they were).
    fn try_assign(&mut self, ops: &[usize]) -> std::result::Result<(), String> {
        let mut assigned: Vec<TensorId> = Vec::new();
        let result = self.assign(ops, &mut assigned);
        if result.is_err() {
            for t in assigned {
                self.params.remove(&t);
            }
        }
        result
    }

    fn assign(
        &mut self,
        ops: &[usize],
        assigned: &mut Vec<TensorId>,
    ) -> std::result::Result<(), String> {
        for &i in ops {
            let op = &self.model.operators[i];
            let name = crate::formats::tflite::target::builtin_name(op.code);
            let kernel =
                int8_kernel(op.code).ok_or_else(|| format!("{name} has no int8 kernel"))?;
            let inputs = op.inputs.clone();
            let outputs = op.outputs.clone();
            let op_code = op.code;
            let mut first_input: Option<ActParams> = None;
            let mut widest_input = 0f32;
            for (slot, t) in inputs.iter().enumerate() {
                let Some(t) = *t else { continue };
                let tensor = self.model.tensor(t);
                if tensor.dtype != tfl::TensorType::FLOAT32 {
                    continue;
                }
                if tensor.data.is_some() {
                    // Constants are quantized with the operator.
                    continue;
                }
                if kernel.filter.is_some_and(|(s, _)| s == slot) {
                    return Err(format!("{name}'s filter is computed"));
                }
                match self.params.get(&t) {
                    Some(&p) => {
                        check_scale(&name, &tensor.name, p)?;
                        first_input.get_or_insert(p);
                        widest_input = widest_input.max(p.scale);
                    }
                    None => {
                        return Err(format!(
                            "{name} reads {}, which has no calibrated range",
                            tensor.name
                        ));
                    }
                }
            }
            for &t in &outputs {
                if !self.is_float_activation(t) {
                    if self.model.tensor(t).dtype == tfl::TensorType::FLOAT32 {
                        return Err(format!("{name} writes a constant"));
                    }
                    continue;
                }
                let p = match kernel.output {
                    Output::Fixed(p) => p,
                    Output::SameAsInput => {
                        first_input.ok_or_else(|| format!("{name} has no float input to share"))?
                    }
                    Output::Calibrated => match self.params.get(&t) {
                        Some(&p) => p,
                        None => {
                            return Err(format!(
                                "{} has no calibrated range",
                                self.model.tensor(t).name
                            ));
                        }
                    },
                };
                check_scale(&name, &self.model.tensor(t).name, p)?;
                // ADD/SUB rescale inputs to twice the widest input scale over
                // 2^20 output steps; a smaller output scale aborts the kernel.
                let rescales = matches!(
                    op_code,
                    tfl::BuiltinOperator::ADD
                        | tfl::BuiltinOperator::SUB
                        | tfl::BuiltinOperator::SQUARED_DIFFERENCE
                );
                if rescales
                    && f64::from(widest_input) * 2.0 >= f64::from(p.scale) * f64::from(1u32 << 20)
                {
                    return Err(format!(
                        "{name}'s inputs are over 2^19 times coarser than its output"
                    ));
                }
                if self.params.get(&t) != Some(&p) {
                    self.params.insert(t, p);
                    assigned.push(t);
                }
            }
        }
        Ok(())
    }

    /// The operator list again, with int8 operators, quantized constants
    /// and conversions where float and int8 meet.
    fn rebuild(&mut self, int8_ops: &[bool], options: &Int8Options) -> Result<()> {
        let inputs = self.model.inputs.clone();
        for &t in &inputs {
            if options.input == IoType::Float || !self.is_float_activation(t) {
                continue;
            }
            let Some(p) = self.params.get(&t).copied() else {
                return Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                    node: self.model.tensor(t).name.clone(),
                    op: "graph input".into(),
                    reason: format!(
                        "--input-type {}: the input has no calibrated range",
                        options.input.name()
                    ),
                }]));
            };
            self.store_quantized(t, p, options.input);
        }
        let ops = std::mem::take(&mut self.model.operators);
        let readers = readers(&ops, &self.model.outputs);
        let mut producer: HashMap<TensorId, tfl::BuiltinOperator> = HashMap::new();
        // Clamps folded into their producer: their output reads as the producer's.
        for (i, mut op) in ops.into_iter().enumerate() {
            for slot in op.inputs.iter_mut().flatten() {
                if let Some(&t) = self.folded.get(slot) {
                    *slot = t;
                }
            }
            if let Some((from, to)) = self.foldable_clamp(&op, &producer, &readers, options) {
                self.folded.insert(to, from);
                self.folded_ops.push(op.source_node.clone());
                continue;
            }
            for &t in &op.outputs {
                producer.insert(t, op.code);
            }
            if int8_ops[i] {
                let kernel = int8_kernel(op.code).expect("only int8 kernels are marked");
                self.int8_operator(&mut op, &kernel)?;
            } else {
                for slot in op.inputs.iter_mut() {
                    if let Some(t) = *slot
                        && self.held(t) != Held::Float
                    {
                        *slot = Some(self.float_view(t));
                    }
                }
            }
            self.new_ops.push(op);
        }
        for t in self.model.outputs.iter_mut() {
            if let Some(&f) = self.folded.get(t) {
                *t = f;
            }
        }
        for entry in &mut self.model.signature_outputs {
            if let Some(&f) = self.folded.get(&entry.tensor) {
                entry.tensor = f;
            }
        }
        let outputs = self.model.outputs.clone();
        for (k, &t) in outputs.iter().enumerate() {
            let out = match (options.output, self.held(t)) {
                (IoType::Float, Held::Float) => t,
                (IoType::Float, _) => self.float_view(t),
                (IoType::Int8 | IoType::Uint8, held) => match self.params.get(&t).copied() {
                    Some(p) if held != Held::Float || self.is_float_activation(t) => {
                        let int8 = self.int8_view(t, p);
                        if options.output == IoType::Uint8 {
                            self.uint8_copy(int8, p)
                        } else {
                            int8
                        }
                    }
                    _ => {
                        return Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                            node: self.model.tensor(t).name.clone(),
                            op: "graph output".into(),
                            reason: format!(
                                "--output-type {}: the output has no calibrated range",
                                options.output.name()
                            ),
                        }]));
                    }
                },
            };
            if options.output != IoType::Float {
                self.quantized_output_tensors.push(t);
            }
            if out != t {
                self.model.outputs[k] = out;
                for entry in &mut self.model.signature_outputs {
                    if entry.tensor == t {
                        entry.tensor = out;
                    }
                }
            }
        }
        self.model.operators = std::mem::take(&mut self.new_ops);
        Ok(())
    }

    /// A RELU-family op whose input an int8 operator with its own output
    /// scale writes for it alone: that operator's output takes the clamp's
    /// range, so saturating to int8 is the clamp, and the op goes. Returns
    /// (input, output) of the folded op after retuning the input's parameters.
    fn foldable_clamp(
        &mut self,
        op: &TflOperator,
        producer: &HashMap<TensorId, tfl::BuiltinOperator>,
        readers: &HashMap<TensorId, usize>,
        options: &Int8Options,
    ) -> Option<(TensorId, TensorId)> {
        use tfl::BuiltinOperator as B;
        let bounds = match op.code {
            B::RELU => (0.0, f64::INFINITY),
            B::RELU6 => (0.0, 6.0),
            B::RELU_N1_TO_1 => (-1.0, 1.0),
            B::RELU_0_TO_1 => (0.0, 1.0),
            _ => return None,
        };
        let (&[Some(t)], &[r]) = (op.inputs.as_slice(), op.outputs.as_slice()) else {
            return None;
        };
        let calibrated_producer = producer
            .get(&t)
            .and_then(|&code| int8_kernel(code))
            .is_some_and(|k| k.output == Output::Calibrated);
        if self.held(t) != Held::Int8
            || !calibrated_producer
            || readers.get(&t) != Some(&1)
            || options.keep_float.matches(&op.source_node)
        {
            return None;
        }
        let p = match self.params.get(&r) {
            Some(&p) => {
                let (lo, hi) = (p.dequantize(-128), p.dequantize(127));
                let within = f64::from(lo) >= bounds.0 - 1e-6 && f64::from(hi) <= bounds.1 + 1e-6;
                if within {
                    p
                } else if bounds.1.is_finite() {
                    ActParams::of_range(bounds.0, bounds.1)
                } else {
                    return None;
                }
            }
            None if bounds.1.is_finite() => ActParams::of_range(bounds.0, bounds.1),
            None => return None,
        };
        self.params.insert(t, p);
        self.params.insert(r, p);
        self.model.tensor_mut(t).quant = Some(per_tensor(p.scale, p.zero_point));
        Some((t, r))
    }

    fn held(&self, t: TensorId) -> Held {
        self.held.get(&t).copied().unwrap_or(Held::Float)
    }

    /// Makes graph input `t` an int8 (or uint8) tensor of parameters `p`.
    fn store_quantized(&mut self, t: TensorId, p: ActParams, io: IoType) {
        let tensor = self.model.tensor_mut(t);
        match io {
            IoType::Uint8 => {
                tensor.dtype = tfl::TensorType::UINT8;
                tensor.quant = Some(per_tensor(p.scale, p.as_uint8_zero_point()));
                self.held.insert(t, Held::Uint8);
            }
            _ => {
                tensor.dtype = tfl::TensorType::INT8;
                tensor.quant = Some(per_tensor(p.scale, p.zero_point));
                self.held.insert(t, Held::Int8);
            }
        }
    }

    fn int8_operator(&mut self, op: &mut TflOperator, kernel: &Int8Kernel) -> Result<()> {
        let shared = match kernel.output {
            Output::SameAsInput => op
                .inputs
                .iter()
                .flatten()
                .find(|&&t| self.is_float_activation(t))
                .and_then(|t| self.params.get(t).copied()),
            _ if kernel.inputs_share_output => {
                op.outputs.first().and_then(|t| self.params.get(t).copied())
            }
            _ => None,
        };
        let mut filter_scales: Option<Vec<f32>> = None;
        let mut input_scale: Option<f32> = None;
        let inputs = op.inputs.clone();
        for (slot, t) in inputs.iter().enumerate() {
            let Some(t) = *t else { continue };
            if self.model.tensor(t).dtype != tfl::TensorType::FLOAT32 && self.held(t) == Held::Float
            {
                continue;
            }
            if kernel.bias == Some(slot) {
                continue;
            }
            let new = if self.model.tensor(t).data.is_some() {
                if let Some((_, axis)) = kernel.filter.filter(|&(s, _)| s == slot) {
                    let (q, scales) = self.quantized_filter(t, axis)?;
                    filter_scales = Some(scales);
                    q
                } else {
                    self.quantized_constant(t, shared)?
                }
            } else {
                let p = shared.unwrap_or(self.params[&t]);
                let q = self.int8_view(t, p);
                input_scale.get_or_insert(p.scale);
                q
            };
            op.inputs[slot] = Some(new);
        }
        if let Some(slot) = kernel.bias
            && let Some(Some(b)) = op.inputs.get(slot).copied()
            && self.model.tensor(b).data.is_some()
        {
            let scales = filter_scales
                .as_ref()
                .ok_or_else(|| Error::Graph("an int8 bias without a filter".into()))?;
            let s_in =
                input_scale.ok_or_else(|| Error::Graph("an int8 bias without an input".into()))?;
            op.inputs[slot] = Some(self.quantized_bias(b, s_in, scales)?);
        }
        for &t in &op.outputs {
            if !self.is_float_activation(t) {
                continue;
            }
            let p = self.params[&t];
            let tensor = self.model.tensor_mut(t);
            tensor.dtype = tfl::TensorType::INT8;
            tensor.quant = Some(per_tensor(p.scale, p.zero_point));
            self.held.insert(t, Held::Int8);
        }
        op.version = op.version.max(kernel.version);
        Ok(())
    }

    /// `t` in int8 with parameters `p`: itself when already so, else a
    /// QUANTIZE (from float, uint8, or int8 of other parameters), made once.
    fn int8_view(&mut self, t: TensorId, p: ActParams) -> TensorId {
        let held = self.held(t);
        if held == Held::Int8 && self.params.get(&t) == Some(&p) {
            return t;
        }
        let key = (t, p.zero_point, p.scale.to_bits());
        if let Some(&q) = self.to_int8.get(&key) {
            return q;
        }
        if held == Held::Float {
            self.quantized_reads.insert(t);
        }
        let src = self.model.tensor(t).clone();
        let q = self.model.add_tensor(TflTensor {
            name: format!("{}_int8", src.name),
            dtype: tfl::TensorType::INT8,
            shape: src.shape.clone(),
            data: None,
            quant: Some(per_tensor(p.scale, p.zero_point)),
            is_variable: false,
        });
        self.params.insert(q, p);
        self.held.insert(q, Held::Int8);
        self.conversion(tfl::BuiltinOperator::QUANTIZE, t, q, &src.name);
        self.to_int8.insert(key, q);
        q
    }

    /// `t` (int8 or uint8) as float32, by a DEQUANTIZE made once.
    fn float_view(&mut self, t: TensorId) -> TensorId {
        if let Some(&f) = self.to_float.get(&t) {
            return f;
        }
        let src = self.model.tensor(t).clone();
        let f = self.model.add_tensor(TflTensor {
            name: format!("{}_float", src.name),
            dtype: tfl::TensorType::FLOAT32,
            shape: src.shape.clone(),
            data: None,
            quant: None,
            is_variable: false,
        });
        self.conversion(tfl::BuiltinOperator::DEQUANTIZE, t, f, &src.name);
        self.to_float.insert(t, f);
        f
    }

    fn uint8_copy(&mut self, t: TensorId, p: ActParams) -> TensorId {
        let src = self.model.tensor(t).clone();
        let u = self.model.add_tensor(TflTensor {
            name: format!("{}_uint8", src.name),
            dtype: tfl::TensorType::UINT8,
            shape: src.shape.clone(),
            data: None,
            quant: Some(per_tensor(p.scale, p.as_uint8_zero_point())),
            is_variable: false,
        });
        self.conversion(tfl::BuiltinOperator::QUANTIZE, t, u, &src.name);
        u
    }

    fn conversion(&mut self, code: tfl::BuiltinOperator, from: TensorId, to: TensorId, node: &str) {
        self.new_ops.push(TflOperator {
            code,
            version: 2,
            inputs: vec![Some(from)],
            outputs: vec![to],
            options: tfl::BuiltinOptionsT::NONE,
            source_node: node.to_string(),
        });
    }

    fn floats(&self, t: TensorId) -> Result<Vec<f32>> {
        let data = self.model.tensor(t).data.as_ref().expect("a constant");
        if data.len() % 4 != 0 {
            return Err(Error::Graph(format!(
                "constant {} is not float32 data",
                self.model.tensor(t).name
            )));
        }
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn quantized_filter(&mut self, t: TensorId, axis: usize) -> Result<(TensorId, Vec<f32>)> {
        let values = self.floats(t)?;
        let (filter, scales) = per_channel_filter(self.model.tensor(t), &values, axis);
        Ok((self.model.add_tensor(filter), scales))
    }

    fn quantized_bias(
        &mut self,
        t: TensorId,
        input_scale: f32,
        scales: &[f32],
    ) -> Result<TensorId> {
        let values = self.floats(t)?;
        let (q, bias_scales) = bias_int32(&values, input_scale, scales);
        let src = self.model.tensor(t).clone();
        let bytes: Vec<u8> = q.iter().flat_map(|x| x.to_le_bytes()).collect();
        Ok(self.model.add_tensor(TflTensor {
            name: format!("{}_int32", src.name),
            dtype: tfl::TensorType::INT32,
            shape: src.shape,
            data: Some(Bytes::from(bytes)),
            quant: Some(TflQuant {
                zero_point: vec![0; bias_scales.len()],
                scale: bias_scales,
                axis: 0,
            }),
            is_variable: false,
        }))
    }

    /// A float constant read by an int8 operator: with `shared` parameters
    /// when the kernel needs its inputs alike, else by its own range.
    fn quantized_constant(&mut self, t: TensorId, shared: Option<ActParams>) -> Result<TensorId> {
        let values = self.floats(t)?;
        let (q, p) = match shared {
            Some(p) => (values.iter().map(|&x| p.quantize(x)).collect(), p),
            None => asymmetric_per_tensor(&values),
        };
        let src = self.model.tensor(t).clone();
        Ok(self.model.add_tensor(TflTensor {
            name: format!("{}_int8", src.name),
            dtype: tfl::TensorType::INT8,
            shape: src.shape,
            data: Some(Bytes::from(q.iter().map(|&x| x as u8).collect::<Vec<u8>>())),
            quant: Some(per_tensor(p.scale, p.zero_point)),
            is_variable: false,
        }))
    }

    fn summarize(&self, summary: &mut Int8Summary) {
        for (&t, &held) in &self.held {
            if held == Held::Float {
                continue;
            }
            if let Some(&v) = self.value_of.get(&t) {
                summary.value_params.insert(v, self.params[&t]);
                summary.stored_quantized.insert(v);
            }
        }
        for t in &self.quantized_output_tensors {
            if let (Some(&v), Some(&p)) = (self.value_of.get(t), self.params.get(t)) {
                summary.value_params.entry(v).or_insert(p);
                summary.quantized_outputs.insert(v);
            }
        }
        // A folded clamp's output holds its producer's int8 values.
        for (&clamp, &from) in &self.folded {
            if let (Some(&v), Some(&p)) = (self.value_of.get(&clamp), self.params.get(&from)) {
                summary.value_params.insert(v, p);
                summary.stored_quantized.insert(v);
            }
        }
        for &t in &self.quantized_reads {
            if let Some(&v) = self.value_of.get(&t) {
                summary.value_params.entry(v).or_insert(self.params[&t]);
            }
        }
    }
}

/// Ranges this wide hold attention masks' stand-ins for infinity, not data:
/// the kernels' fixed-point multipliers overflow (LiteRT aborts).
const MAX_SCALE: f32 = 1e6;

fn check_scale(op: &str, tensor: &str, p: ActParams) -> std::result::Result<(), String> {
    if p.scale.is_finite() && p.scale <= MAX_SCALE {
        Ok(())
    } else {
        Err(format!(
            "{op}: {tensor} spans +-{:.1e}, too wide for int8",
            f64::from(p.scale) * 128.0
        ))
    }
}

/// How many operators (and model outputs) read each tensor.
fn readers(ops: &[TflOperator], outputs: &[TensorId]) -> HashMap<TensorId, usize> {
    let mut n = HashMap::new();
    for t in ops
        .iter()
        .flat_map(|op| op.inputs.iter().flatten())
        .chain(outputs)
    {
        *n.entry(*t).or_default() += 1;
    }
    n
}

/// `tensor` (float32 `values`) as symmetric int8 per index of `axis`; and
/// the scales. Full-integer and dynamic-range filters are both made here.
pub fn per_channel_filter(
    tensor: &TflTensor,
    values: &[f32],
    axis: usize,
) -> (TflTensor, Vec<f32>) {
    let shape: Vec<usize> = tensor.shape.iter().map(|&d| d.max(0) as usize).collect();
    let channels = shape.get(axis).copied().unwrap_or(1);
    let (q, scales) = symmetric_per_channel(values, channels, channel_index(&shape, axis));
    let filter = TflTensor {
        name: format!("{}_int8", tensor.name),
        dtype: tfl::TensorType::INT8,
        shape: tensor.shape.clone(),
        data: Some(Bytes::from(q.iter().map(|&x| x as u8).collect::<Vec<u8>>())),
        quant: Some(TflQuant {
            scale: scales.clone(),
            zero_point: vec![0; scales.len()],
            axis: axis as i32,
        }),
        is_variable: false,
    };
    (filter, scales)
}

fn per_tensor(scale: f32, zero_point: i32) -> TflQuant {
    TflQuant {
        scale: vec![scale],
        zero_point: vec![i64::from(zero_point)],
        axis: 0,
    }
}

/// `true` when `filter` keeps `name` in float.
impl NodeFilter {
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, name))
    }
}

/// Shell-style matching of `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*", "conv_1"));
        assert!(glob_match("conv_*", "conv_12"));
        assert!(glob_match("*_se_*", "block3_se_fc"));
        assert!(glob_match("c?nv", "conv"));
        assert!(!glob_match("conv_*", "relu_1"));
        assert!(!glob_match("c?nv", "cnv"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
