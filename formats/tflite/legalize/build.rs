//! Building a decomposition: IR nodes added through one patch, each output's
//! fact inferred from its inputs as the node is added, so a rewrite states
//! only ops and operands.

use std::collections::HashSet;

use bytes::Bytes;

use crate::ir::error::{Error, Result};
use crate::ir::infer::{InferInput, infer_op};
use crate::ir::ops::{ReduceAttrs, ReshapeAttrs, TransposeAttrs};
use crate::ir::patch::{Patch, PatchValue};
use crate::ir::{DType, Fact, Graph, NodeId, Op, Shape, Tensor, ValueId, Weight};

/// Constants up to this many elements are handed to shape inference by value
/// (axes, shapes, scalars).
const SMALL_CONSTANT: usize = 64;

/// Every value and node name in `g`, for [`Builder`] to avoid.
pub fn taken_names(g: &Graph) -> HashSet<String> {
    g.values()
        .map(|(_, v)| v.name.clone())
        .chain(g.nodes().map(|(_, n)| n.name.clone()))
        .collect()
}

/// An error located at `node`.
pub fn node_error(node: &crate::ir::Node, msg: impl Into<String>) -> Error {
    Error::node(node.name.clone(), node.op.name().to_string(), msg)
}

/// The `i`-th input of `node`, which the decomposition needs.
pub fn required(node: &crate::ir::Node, i: usize) -> Result<ValueId> {
    node.input(i)
        .ok_or_else(|| node_error(node, format!("input {i} is required")))
}

/// The static shape of `v`, if it has one.
pub fn static_shape(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    g.fact(v).shape.as_fixed()
}

/// A patch that replaces one node by the nodes it adds.
pub struct Builder<'a> {
    g: &'a mut Graph,
    names: &'a mut HashSet<String>,
    p: Patch,
    /// The replaced node (name, op) for names and errors.
    node: NodeId,
    prefix: String,
    op_name: String,
    /// Fact and small constant value of each value the patch adds, in the
    /// patch's own numbering.
    added: Vec<(Fact, Option<Tensor>)>,
}

impl<'a> Builder<'a> {
    pub fn new(
        g: &'a mut Graph,
        names: &'a mut HashSet<String>,
        rule: &str,
        node: NodeId,
    ) -> Builder<'a> {
        let n = g.node(node);
        let (prefix, op_name) = (n.name.clone(), n.op.name().to_string());
        Builder {
            g,
            names,
            p: Patch::new(rule),
            node,
            prefix,
            op_name,
            added: Vec::new(),
        }
    }

    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::node(self.prefix.clone(), self.op_name.clone(), msg)
    }

    pub fn graph(&self) -> &Graph {
        self.g
    }

    pub fn tap(&self, v: ValueId) -> PatchValue {
        self.p.tap(v)
    }

    pub fn fact(&self, v: PatchValue) -> Fact {
        match v {
            PatchValue::Existing(id) => self.g.fact(id).clone(),
            PatchValue::New(i) => self.added[i].0.clone(),
        }
    }

    /// The static shape of `v`.
    pub fn shape(&self, v: PatchValue) -> Result<Vec<usize>> {
        self.fact(v)
            .shape
            .as_fixed()
            .ok_or_else(|| self.error("the decomposition needs static shapes"))
    }

    pub fn dtype(&self, v: PatchValue) -> Result<DType> {
        self.fact(v)
            .dtype
            .ok_or_else(|| self.error("the decomposition needs known dtypes"))
    }

    fn fresh(&mut self, suffix: &str) -> String {
        let base = format!("{}/{suffix}", self.prefix);
        let mut name = base.clone();
        let mut n = 1;
        while self.names.contains(&name) {
            name = format!("{base}.{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn infer_input(&self, v: PatchValue) -> InferInput {
        let value = match v {
            PatchValue::Existing(id) => self
                .g
                .weight_of(id)
                .filter(|w| w.element_count() <= SMALL_CONSTANT as u64)
                .and_then(|w| Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()),
            PatchValue::New(i) => self.added[i].1.clone(),
        };
        match value {
            Some(t) => InferInput::constant(t),
            None => InferInput::from_fact(self.fact(v)),
        }
    }

    /// Adds a constant of `dtype` holding `values` (computed in f64, rounded once).
    pub fn constant(
        &mut self,
        suffix: &str,
        dtype: DType,
        shape: &[usize],
        values: Vec<f64>,
    ) -> Result<PatchValue> {
        let t = Tensor::F64(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values)
                .map_err(|e| self.error(format!("constant {suffix}: {e}")))?,
        )
        .cast(dtype)?;
        self.tensor(suffix, t)
    }

    /// Adds a constant holding `t`.
    pub fn tensor(&mut self, suffix: &str, t: Tensor) -> Result<PatchValue> {
        let name = self.fresh(suffix);
        let w = Weight::new(
            name,
            t.dtype(),
            t.shape().to_vec(),
            Bytes::from(t.to_bytes()),
        )?;
        let fact = Fact::new(t.dtype(), Shape::fixed(t.shape()));
        let small = (t.len() <= SMALL_CONSTANT).then_some(t);
        let v = self.p.add_weight(w);
        self.push(v, fact, small);
        Ok(v)
    }

    pub fn scalar(&mut self, suffix: &str, dtype: DType, value: f64) -> Result<PatchValue> {
        self.constant(suffix, dtype, &[], vec![value])
    }

    pub fn ints(&mut self, suffix: &str, values: &[i64]) -> Result<PatchValue> {
        let t = Tensor::from_i64(&[values.len()], values.to_vec())?;
        self.tensor(suffix, t)
    }

    fn push(&mut self, v: PatchValue, fact: Fact, value: Option<Tensor>) {
        debug_assert_eq!(v, PatchValue::New(self.added.len()));
        self.added.push((fact, value));
    }

    /// Adds a node of one output; its fact is inferred.
    pub fn op(
        &mut self,
        suffix: &str,
        op: Op,
        inputs: &[Option<PatchValue>],
    ) -> Result<PatchValue> {
        let infer_inputs: Vec<Option<InferInput>> = inputs
            .iter()
            .map(|v| v.map(|v| self.infer_input(v)))
            .collect();
        let inferred = infer_op(&op, &infer_inputs, 1, &mut self.g.symbols)
            .map_err(|e| self.error(format!("{suffix}: {e}")))?
            .remove(0);
        let node_name = self.fresh(suffix);
        let value_name = self.fresh(&format!("{suffix}_out"));
        let out = self.p.add_node(
            node_name,
            op,
            inputs.to_vec(),
            vec![(value_name, inferred.fact.clone())],
        )[0];
        self.push(out, inferred.fact, None);
        Ok(out)
    }

    /// A node whose inputs are all present.
    pub fn op2(&mut self, suffix: &str, op: Op, inputs: &[PatchValue]) -> Result<PatchValue> {
        let inputs: Vec<Option<PatchValue>> = inputs.iter().map(|&v| Some(v)).collect();
        self.op(suffix, op, &inputs)
    }

    pub fn reshape(&mut self, suffix: &str, x: PatchValue, shape: &[usize]) -> Result<PatchValue> {
        if self.shape(x)? == shape {
            return Ok(x);
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let target = self.ints(&format!("{suffix}_shape"), &dims)?;
        self.op2(
            suffix,
            Op::Reshape(ReshapeAttrs { allowzero: false }),
            &[x, target],
        )
    }

    pub fn transpose(&mut self, suffix: &str, x: PatchValue, perm: &[usize]) -> Result<PatchValue> {
        self.op2(
            suffix,
            Op::Transpose(TransposeAttrs {
                perm: Some(perm.to_vec()),
            }),
            &[x],
        )
    }

    /// A keepdims reduction (`make` builds the op from its attributes) over `axes`.
    pub fn reduce(
        &mut self,
        suffix: &str,
        make: fn(ReduceAttrs) -> Op,
        x: PatchValue,
        axes: &[usize],
    ) -> Result<PatchValue> {
        let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let axes = self.ints(&format!("{suffix}_axes"), &axes)?;
        let op = make(ReduceAttrs {
            keepdims: true,
            noop_with_empty_axes: false,
        });
        self.op2(suffix, op, &[x, axes])
    }

    /// `v` as a weight of `shape` when it is a constant (same elements), else
    /// through a Reshape node.
    pub fn reshaped_param(
        &mut self,
        suffix: &str,
        v: ValueId,
        shape: &[usize],
    ) -> Result<PatchValue> {
        if let Some(w) = self.g.weight_of(v) {
            let t = Tensor::from_bytes(w.dtype, &w.shape, &w.data)?;
            if t.len() != shape.iter().product::<usize>() {
                return Err(self.error(format!(
                    "{} has {} elements, expected shape {shape:?}",
                    w.name,
                    t.len()
                )));
            }
            let t = Tensor::from_bytes(t.dtype(), shape, &t.to_bytes())?;
            return self.tensor(suffix, t);
        }
        let x = self.tap(v);
        self.reshape(suffix, x, shape)
    }

    /// Every use of the replaced node's output `i` reads `value`; the node goes.
    pub fn finish(mut self, outputs: &[PatchValue]) -> Patch {
        let old = self.g.node(self.node).outputs.clone();
        for (&o, &v) in old.iter().zip(outputs) {
            self.p.redirect(o, v);
        }
        self.p.remove_node(self.node);
        self.p
    }
}

#[cfg(test)]
pub mod testing {
    //! Checks a decomposition with the interpreter.

    use ndarray::{ArrayD, IxDyn};

    use crate::ir::compare::compare;
    use crate::ir::eval::run;
    use crate::ir::{DType, Graph, Tensor};
    pub use crate::passes::fuse::testing::{kinds, run_pass};

    /// Deterministic inputs: floats over [-3, 3] (shifted by `offset`), bools alternating.
    pub fn inputs(g: &Graph, seed: u64, offset: f64) -> Vec<Tensor> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        g.inputs
            .iter()
            .map(|&v| {
                let fact = g.fact(v);
                let shape = fact.shape.as_fixed().unwrap();
                let n: usize = shape.iter().product();
                let values: Vec<f64> = (0..n).map(|_| next() * 6.0 - 3.0 + offset).collect();
                let t = Tensor::F64(ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap());
                match fact.dtype.unwrap() {
                    DType::Bool => Tensor::Bool(t.to_f32().mapv(|v| v > offset as f32 - 1.0)),
                    d => t.cast(d).unwrap(),
                }
            })
            .collect()
    }

    /// Both graphs give the same outputs within `tolerance` relative.
    pub fn assert_same(before: &Graph, after: &Graph, offset: f64, tolerance: f64) {
        for seed in 1..4 {
            let x = inputs(before, seed, offset);
            let want = run(before, x.clone()).unwrap();
            let got = run(after, x).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let agreement = compare(g, w).unwrap();
                assert!(
                    agreement.within(tolerance),
                    "output {i} differs: {agreement:?}\n got {:?}\nwant {:?}",
                    g.to_f64_vec(),
                    w.to_f64_vec()
                );
            }
        }
    }
}
