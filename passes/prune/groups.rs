//! Which channel axes must be pruned together.
//!
//! Every regular Conv output starts a *raw group* of channels. Walking the
//! graph in order, each value whose axis 1 carries such channels gets a
//! *layout*: the raw groups its channel axis is made of, in order (one, or
//! several after a channel Concat). Channel-wise ops pass layouts on; ops
//! joining two such values (residual Add, SE Mul, Concat on another axis)
//! unify their raw groups (union-find), since the same channels must go on
//! both sides. Anything the slicer cannot follow *blocks* the groups it
//! touches, with the reason. Along the way the walk records every edit a
//! pruned group will need: weight slices of producers, BatchNorm and
//! per-channel constants, consumers' input channels, depthwise group counts,
//! reshape targets.

use std::collections::HashMap;

use crate::ir::shape::normalize_axis;
use crate::ir::{Dim, Graph, NodeId, Op, ValueId};

/// An edit of one node that a pruned layout needs.
#[derive(Clone, Debug)]
pub enum EditKind {
    /// Keep the layout's channels along `axis` of the constant input `slot`.
    SliceInput {
        slot: usize,
        axis: usize,
        layout: Vec<usize>,
    },
    /// A depthwise Conv's `group` becomes the layout's channel count.
    DepthwiseGroups { layout: Vec<usize> },
    /// Element `position` of the constant shape input `slot` becomes the layout's channel count.
    ReshapeTarget {
        slot: usize,
        position: usize,
        layout: Vec<usize>,
    },
}

#[derive(Clone, Debug)]
pub struct Edit {
    pub node: NodeId,
    pub kind: EditKind,
}

/// Output channels of one Conv, before unification.
#[derive(Clone, Debug, Default)]
struct RawGroup {
    channels: usize,
    /// Producing node and the (weight slot, output-channel axis).
    producers: Vec<(NodeId, usize)>,
    blocked: Vec<String>,
    /// Read by a computed Reshape target or a Shape/Size: whether shapes
    /// elsewhere survive can only be checked after pruning.
    provisional: bool,
}

/// A set of unified raw groups: channels that are kept or removed together.
#[derive(Clone, Debug, Default)]
pub struct Class {
    pub channels: usize,
    /// (node, weight slot, output-channel axis) of the producing Convs.
    pub producers: Vec<(NodeId, usize, usize)>,
    pub blocked: Vec<String>,
    pub provisional: bool,
}

/// The analysis result: classes, the layout of every channel-carrying value
/// (as class indices), and the edits pruning needs.
pub struct Analysis {
    pub classes: Vec<Class>,
    pub layouts: HashMap<ValueId, Vec<usize>>,
    pub edits: Vec<Edit>,
}

/// Analyses `g`. With `block_provisional`, groups whose survival can only be
/// checked after the fact are blocked up front.
pub fn analyze(g: &Graph, block_provisional: bool) -> crate::ir::Result<Analysis> {
    let mut w = Walk {
        g,
        parent: Vec::new(),
        raw: Vec::new(),
        layouts: HashMap::new(),
        edits: Vec::new(),
    };
    for id in g.topo_order()? {
        w.node(id);
    }
    for &out in &g.outputs {
        if let Some(l) = w.layouts.get(&out).cloned() {
            let reason = format!("reaches graph output '{}'", g.value(out).name);
            w.block(&l, &reason);
        }
    }
    Ok(w.finish(block_provisional))
}

struct Walk<'g> {
    g: &'g Graph,
    parent: Vec<usize>,
    raw: Vec<RawGroup>,
    layouts: HashMap<ValueId, Vec<usize>>,
    edits: Vec<Edit>,
}

impl Walk<'_> {
    fn new_group(&mut self, channels: usize) -> usize {
        self.parent.push(self.raw.len());
        self.raw.push(RawGroup {
            channels,
            ..RawGroup::default()
        });
        self.raw.len() - 1
    }

    fn find(&mut self, mut r: usize) -> usize {
        while self.parent[r] != r {
            self.parent[r] = self.parent[self.parent[r]];
            r = self.parent[r];
        }
        r
    }

    fn block(&mut self, layout: &[usize], reason: &str) {
        for &r in layout {
            if !self.raw[r].blocked.iter().any(|b| b == reason) {
                self.raw[r].blocked.push(reason.to_string());
            }
        }
    }

    fn channels(&self, layout: &[usize]) -> usize {
        layout.iter().map(|&r| self.raw[r].channels).sum()
    }

    /// Joins two layouts segment by segment; layouts of different structure block both.
    fn unify(&mut self, a: &[usize], b: &[usize], node: &str) -> Vec<usize> {
        let same_structure = a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| self.raw[x].channels == self.raw[y].channels);
        if !same_structure {
            let reason = format!("node '{node}' joins channels concatenated differently");
            self.block(a, &reason);
            self.block(b, &reason);
            return a.to_vec();
        }
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (self.find(x), self.find(y));
            if x != y {
                self.parent[y] = x;
            }
        }
        a.to_vec()
    }

    fn edit(&mut self, node: NodeId, kind: EditKind) {
        self.edits.push(Edit { node, kind });
    }

    fn layout(&self, v: Option<ValueId>) -> Option<Vec<usize>> {
        v.and_then(|v| self.layouts.get(&v).cloned())
    }

    fn fixed_dims(&self, v: ValueId) -> Option<Vec<Option<u64>>> {
        Some(
            self.g
                .fact(v)
                .shape
                .dims()?
                .iter()
                .map(Dim::fixed)
                .collect(),
        )
    }

    fn is_constant(&self, v: Option<ValueId>) -> bool {
        v.is_some_and(|v| self.g.weight_of(v).is_some() && self.g.fact(v).quant.is_none())
    }

    fn node(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let tracked: Vec<Vec<usize>> = node.inputs.iter().filter_map(|&v| self.layout(v)).collect();
        let pass_on = |w: &mut Self, l: &[usize]| {
            for &o in &node.outputs {
                w.layouts.insert(o, l.to_vec());
            }
        };
        let input0 = self.layout(node.input(0));
        match &node.op {
            Op::Conv(a) => self.conv(id, a.group, input0),
            Op::ConvTranspose(a) => {
                if let Some(l) = &input0 {
                    if a.group == 1 && self.is_constant(node.input(1)) {
                        self.edit(
                            id,
                            EditKind::SliceInput {
                                slot: 1,
                                axis: 0,
                                layout: l.clone(),
                            },
                        );
                    } else {
                        self.block(
                            l,
                            &format!(
                                "read by grouped or non-constant ConvTranspose '{}'",
                                node.name
                            ),
                        );
                    }
                }
                if a.group == 1 {
                    self.producer(id, 1);
                }
            }
            Op::BatchNormalization(_) => {
                let Some(l) = input0 else {
                    return self.block_all(&tracked, node);
                };
                for slot in 1..=4 {
                    if self.is_constant(node.input(slot)) {
                        self.edit(
                            id,
                            EditKind::SliceInput {
                                slot,
                                axis: 0,
                                layout: l.clone(),
                            },
                        );
                    } else {
                        self.block(
                            &l,
                            &format!("BatchNormalization '{}' has computed parameters", node.name),
                        );
                    }
                }
                pass_on(self, &l);
            }
            op if is_channelwise_unary(op) => {
                if let Some(l) = input0 {
                    let others_tracked = node
                        .inputs
                        .iter()
                        .skip(1)
                        .any(|&v| self.layout(v).is_some());
                    if others_tracked {
                        return self.block_all(&tracked, node);
                    }
                    pass_on(self, &l);
                }
            }
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Max
            | Op::Min
            | Op::Pow
            | Op::PRelu
            | Op::Sum
            | Op::Mean => {
                if !tracked.is_empty() {
                    self.elementwise(id);
                }
            }
            Op::Concat(a) => {
                if !tracked.is_empty() {
                    self.concat(id, a.axis);
                }
            }
            Op::Flatten(a) => {
                if let Some(l) = input0 {
                    if a.axis == 1 && self.flattens_channels_only(id, &l) {
                        pass_on(self, &l);
                    } else {
                        self.block(
                            &l,
                            &format!("Flatten '{}' mixes channels with other axes", node.name),
                        );
                    }
                }
            }
            Op::Reshape(_) => {
                if let Some(l) = input0 {
                    self.reshape(id, l);
                } else if !tracked.is_empty() {
                    self.block_all(&tracked, node);
                }
            }
            Op::MatMul | Op::Gemm(_) | Op::Linear(_) => self.linear(id, input0, &tracked),
            Op::Shape(_) | Op::Size => {
                for l in &tracked {
                    for &r in l {
                        self.raw[r].provisional = true;
                    }
                }
            }
            _ => self.block_all(&tracked, node),
        }
    }

    fn block_all(&mut self, tracked: &[Vec<usize>], node: &crate::ir::Node) {
        let reason = format!("read by {} '{}'", node.op.name(), node.name);
        for l in tracked {
            self.block(l, &reason);
        }
    }

    /// A new raw group for the output channels of a Conv/ConvTranspose whose
    /// weight (input 1) has its output channels on `axis`.
    fn producer(&mut self, id: NodeId, axis: usize) {
        let node = self.g.node(id);
        let out = node.outputs[0];
        let Some(channels) = self
            .fixed_dims(out)
            .and_then(|d| d.get(1).copied().flatten())
        else {
            return;
        };
        let r = self.new_group(channels as usize);
        self.layouts.insert(out, vec![r]);
        let constant_weight = self.is_constant(node.input(1))
            && self
                .g
                .weight_of(node.input(1).expect("constant"))
                .is_some_and(|w| w.shape.get(axis) == Some(&(channels as usize)));
        let bias = node.input(2);
        if !constant_weight || (bias.is_some() && !self.is_constant(bias)) {
            self.block(
                &[r],
                &format!("'{}' has a computed weight or bias", node.name),
            );
            return;
        }
        self.raw[r].producers.push((id, axis));
        self.edit(
            id,
            EditKind::SliceInput {
                slot: 1,
                axis,
                layout: vec![r],
            },
        );
        if bias.is_some() {
            self.edit(
                id,
                EditKind::SliceInput {
                    slot: 2,
                    axis: 0,
                    layout: vec![r],
                },
            );
        }
    }

    fn conv(&mut self, id: NodeId, group: usize, input: Option<Vec<usize>>) {
        let node = self.g.node(id);
        let weight_shape = node
            .input(1)
            .and_then(|v| self.g.weight_of(v))
            .map(|w| w.shape.clone());
        let depthwise = group > 1
            && weight_shape
                .as_ref()
                .is_some_and(|s| s.len() >= 2 && s[0] == group && s[1] == 1);
        match (input, group) {
            (Some(l), 1) => {
                if self.is_constant(node.input(1)) {
                    self.edit(
                        id,
                        EditKind::SliceInput {
                            slot: 1,
                            axis: 1,
                            layout: l,
                        },
                    );
                } else {
                    self.block(
                        &l,
                        &format!("read by Conv '{}' with a computed weight", node.name),
                    );
                }
                self.producer(id, 0);
            }
            (None, 1) => self.producer(id, 0),
            (Some(l), _) if depthwise && self.channels(&l) == group => {
                let bias = node.input(2);
                if !self.is_constant(node.input(1)) || (bias.is_some() && !self.is_constant(bias)) {
                    self.block(
                        &l,
                        &format!(
                            "depthwise Conv '{}' has a computed weight or bias",
                            node.name
                        ),
                    );
                }
                self.edit(
                    id,
                    EditKind::SliceInput {
                        slot: 1,
                        axis: 0,
                        layout: l.clone(),
                    },
                );
                if bias.is_some() {
                    self.edit(
                        id,
                        EditKind::SliceInput {
                            slot: 2,
                            axis: 0,
                            layout: l.clone(),
                        },
                    );
                }
                self.edit(id, EditKind::DepthwiseGroups { layout: l.clone() });
                self.layouts.insert(node.outputs[0], l);
            }
            (Some(l), _) => {
                self.block(&l, &format!("read by grouped Conv '{}'", node.name));
            }
            (None, _) => {}
        }
    }

    /// Elementwise ops with broadcasting: tracked inputs unify; other inputs
    /// must broadcast over the channel axis or be per-channel constants.
    fn elementwise(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let name = node.name.clone();
        let Some(rank) = self.g.fact(node.outputs[0]).shape.rank() else {
            let tracked: Vec<Vec<usize>> =
                node.inputs.iter().filter_map(|&v| self.layout(v)).collect();
            return self.block_all(&tracked, node);
        };
        let mut out: Option<Vec<usize>> = None;
        let mut misaligned = false;
        for &v in node.inputs.iter().flatten() {
            if let Some(l) = self.layouts.get(&v).cloned() {
                if self.g.fact(v).shape.rank() != Some(rank) {
                    misaligned = true;
                }
                out = Some(match out {
                    None => l,
                    Some(prev) => self.unify(&prev, &l, &name),
                });
            }
        }
        let out = out.expect("called with a tracked input");
        if misaligned {
            self.block(
                &out,
                &format!("'{name}' broadcasts channels onto another axis"),
            );
        }
        let channels = self.channels(&out) as u64;
        for (slot, &v) in node.inputs.iter().enumerate() {
            let Some(v) = v else { continue };
            if self.layouts.contains_key(&v) {
                continue;
            }
            let dims = self.fixed_dims(v);
            let Some(dims) = dims else {
                self.block(&out, &format!("'{name}' has an operand of unknown rank"));
                continue;
            };
            let Some(axis) = (dims.len() + 1).checked_sub(rank) else {
                continue;
            };
            let Some(&dim) = dims.get(axis) else { continue };
            match dim {
                Some(1) => {}
                Some(c) if c == channels && self.is_constant(Some(v)) => {
                    self.edit(
                        id,
                        EditKind::SliceInput {
                            slot,
                            axis,
                            layout: out.clone(),
                        },
                    );
                }
                _ => self.block(
                    &out,
                    &format!(
                        "'{name}' joins value '{}' whose channels cannot be pruned",
                        self.g.value(v).name
                    ),
                ),
            }
        }
        for &o in &node.outputs {
            self.layouts.insert(o, out.clone());
        }
    }

    fn concat(&mut self, id: NodeId, axis: i64) {
        let node = self.g.node(id);
        let name = node.name.clone();
        let out_value = node.outputs[0];
        let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        let rank = self.g.fact(out_value).shape.rank();
        let axis = rank.and_then(|r| normalize_axis(axis, r).ok());
        if axis == Some(1) {
            let mut layout = Vec::new();
            for v in inputs {
                match self.layouts.get(&v).cloned() {
                    Some(l) => layout.extend(l),
                    None => {
                        let channels = self.fixed_dims(v).and_then(|d| d.get(1).copied().flatten());
                        let r = self.new_group(channels.unwrap_or(0) as usize);
                        self.block(&[r], "concatenated with channels that cannot be pruned");
                        layout.push(r);
                    }
                }
            }
            self.layouts.insert(out_value, layout);
            return;
        }
        let mut out: Option<Vec<usize>> = None;
        for &v in &inputs {
            match (self.layouts.get(&v).cloned(), out.clone()) {
                (Some(l), None) => out = Some(l),
                (Some(l), Some(prev)) => out = Some(self.unify(&prev, &l, &name)),
                (None, _) => {}
            }
        }
        let out = out.expect("called with a tracked input");
        if axis.is_none() || inputs.iter().any(|v| !self.layouts.contains_key(v)) {
            self.block(
                &out,
                &format!("Concat '{name}' joins channels that cannot be pruned"),
            );
        }
        self.layouts.insert(out_value, out);
    }

    /// `[N, C, 1, ..., 1]` in, `[N, C]` out: the channel axis survives.
    fn flattens_channels_only(&self, id: NodeId, layout: &[usize]) -> bool {
        let node = self.g.node(id);
        let c = Some(self.channels(layout) as u64);
        let input = node.input(0).and_then(|v| self.fixed_dims(v));
        let output = self.fixed_dims(node.outputs[0]);
        let input_ok = input
            .is_some_and(|d| d.len() >= 2 && d[1] == c && d[2..].iter().all(|&x| x == Some(1)));
        let output_ok = output.is_some_and(|d| d.len() == 2 && d[1] == c);
        input_ok && output_ok
    }

    fn reshape(&mut self, id: NodeId, layout: Vec<usize>) {
        let node = self.g.node(id);
        let name = node.name.clone();
        if !self.flattens_channels_only(id, &layout) {
            return self.block(
                &layout,
                &format!("Reshape '{name}' mixes channels with other axes"),
            );
        }
        let target = node.input(1);
        match target.and_then(|v| self.g.weight_of(v)) {
            Some(w) => {
                let values = crate::ir::Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                    .ok()
                    .and_then(|t| t.to_i64_vec().ok());
                match values.as_deref().and_then(|v| v.get(1)) {
                    Some(-1) => {}
                    Some(&c) if c as usize == self.channels(&layout) => {
                        self.edit(
                            id,
                            EditKind::ReshapeTarget {
                                slot: 1,
                                position: 1,
                                layout: layout.clone(),
                            },
                        );
                    }
                    _ => self.block(
                        &layout,
                        &format!("Reshape '{name}' has an unexpected target"),
                    ),
                }
            }
            None => {
                for &r in &layout {
                    self.raw[r].provisional = true;
                }
            }
        }
        for &o in &node.outputs {
            self.layouts.insert(o, layout.clone());
        }
    }

    /// MatMul/Gemm/Linear reading pruned features as rows of a constant weight.
    fn linear(&mut self, id: NodeId, input0: Option<Vec<usize>>, tracked: &[Vec<usize>]) {
        let node = self.g.node(id);
        let weight_axis = match &node.op {
            Op::Gemm(a) if !a.trans_a => Some(if a.trans_b { 1 } else { 0 }),
            Op::MatMul | Op::Linear(_) => Some(0),
            _ => None,
        };
        let rank2 = node
            .input(0)
            .is_some_and(|v| self.g.fact(v).shape.rank() == Some(2));
        let only_input0 = tracked.len() == 1 && input0.is_some();
        match (input0, weight_axis) {
            (Some(l), Some(axis)) if rank2 && only_input0 && self.is_constant(node.input(1)) => {
                self.edit(
                    id,
                    EditKind::SliceInput {
                        slot: 1,
                        axis,
                        layout: l,
                    },
                );
            }
            _ => self.block_all(tracked, node),
        }
    }

    fn finish(mut self, block_provisional: bool) -> Analysis {
        let mut class_of: HashMap<usize, usize> = HashMap::new();
        let mut classes: Vec<Class> = Vec::new();
        let roots: Vec<usize> = (0..self.raw.len()).map(|r| self.find(r)).collect();
        let mut raw_class = Vec::with_capacity(roots.len());
        for (raw, root) in self.raw.iter().zip(roots) {
            let next = classes.len();
            let c = *class_of.entry(root).or_insert(next);
            if c == classes.len() {
                classes.push(Class {
                    channels: raw.channels,
                    ..Class::default()
                });
            }
            raw_class.push(c);
            let class = &mut classes[c];
            for (node, axis) in &raw.producers {
                class.producers.push((*node, 1, *axis));
            }
            for b in &raw.blocked {
                if !class.blocked.contains(b) {
                    class.blocked.push(b.clone());
                }
            }
            class.provisional |= raw.provisional;
        }
        if block_provisional {
            for c in classes.iter_mut().filter(|c| c.provisional) {
                c.blocked
                    .push("a shape computed from these channels might change".into());
            }
        }
        let map = |l: &Vec<usize>| -> Vec<usize> { l.iter().map(|&r| raw_class[r]).collect() };
        let layouts = self.layouts.iter().map(|(&v, l)| (v, map(l))).collect();
        let edits = self
            .edits
            .iter()
            .map(|e| Edit {
                node: e.node,
                kind: match &e.kind {
                    EditKind::SliceInput { slot, axis, layout } => EditKind::SliceInput {
                        slot: *slot,
                        axis: *axis,
                        layout: map(layout),
                    },
                    EditKind::DepthwiseGroups { layout } => EditKind::DepthwiseGroups {
                        layout: map(layout),
                    },
                    EditKind::ReshapeTarget {
                        slot,
                        position,
                        layout,
                    } => EditKind::ReshapeTarget {
                        slot: *slot,
                        position: *position,
                        layout: map(layout),
                    },
                },
            })
            .collect();
        Analysis {
            classes,
            layouts,
            edits,
        }
    }
}

/// Ops that act on each channel alone with no per-channel operand (extra
/// inputs, such as Clip bounds, are scalars).
fn is_channelwise_unary(op: &Op) -> bool {
    use Op::*;
    matches!(
        op,
        Identity
            | Relu
            | HardSwish
            | HardSigmoid(_)
            | Sigmoid
            | Tanh
            | LeakyRelu(_)
            | Elu(_)
            | Celu(_)
            | Selu(_)
            | ThresholdedRelu(_)
            | Softplus
            | Softsign
            | Mish
            | Gelu(_)
            | Abs
            | Neg
            | Exp
            | Log
            | Sqrt
            | Reciprocal
            | Erf
            | Floor
            | Ceil
            | Round
            | Sign
            | Clip
            | Cast(_)
            | MaxPool(_)
            | AveragePool(_)
            | LpPool(_)
            | GlobalAveragePool
            | GlobalMaxPool
    )
}
