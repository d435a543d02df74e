//! Small IR-text graphs with deterministic pseudo-random weights, and helpers
//! the pruning tests share.

use ndarray::{ArrayD, IxDyn};

use crate::ir::patch::Patch;
use crate::ir::text::parse;
use crate::ir::{Graph, Tensor, Weight};

use super::tensor_data::zero_elements;

/// xorshift64*: the same numbers on every platform.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn values(shape: &[usize], seed: u64, offset: f32) -> Vec<f32> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n: usize = shape.iter().product();
    (0..n).map(|_| rng.uniform() + offset).collect()
}

/// `weight NAME: f32[SHAPE] = [...]` with values in `offset ± 1`.
fn weight(name: &str, shape: &[usize], seed: u64, offset: f32) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let vals: Vec<String> = values(shape, seed, offset)
        .iter()
        .map(|v| format!("{v:?}"))
        .collect();
    format!(
        "  weight {name}: f32[{}] = [{}]\n",
        dims.join(","),
        vals.join(",")
    )
}

fn conv_attrs(kernel: usize, pad: usize, group: usize) -> String {
    format!(
        "{{\"dilations\":[1,1],\"group\":{group},\"kernel_shape\":[{kernel},{kernel}],\"padding\":{{\"Explicit\":[{pad},{pad},{pad},{pad}]}},\"strides\":[1,1]}}"
    )
}

fn batchnorm_weights(prefix: &str, c: usize, seed: u64) -> String {
    weight(&format!("{prefix}_gamma"), &[c], seed, 1.0)
        + &weight(&format!("{prefix}_beta"), &[c], seed + 1, 0.0)
        + &weight(&format!("{prefix}_mean"), &[c], seed + 2, 0.0)
        + &weight(&format!("{prefix}_var"), &[c], seed + 3, 1.5)
}

/// x[N,3,5,5] -> Conv(8, 2x2, bias) -> BatchNorm -> Relu -> Conv(6, 1x1, bias) -> y.
pub fn conv_bn_relu_conv() -> String {
    format!(
        "graph g {{
  input x: f32[N,3,5,5]
{}{}{}{}{}  node conv1: c1: f32[N,8,4,4] = Conv {} (x, w1, b1)
  node bn: n1: f32[N,8,4,4] = BatchNormalization {{\"epsilon\":1e-5}} (c1, bn_gamma, bn_beta, bn_mean, bn_var)
  node relu: r1: f32[N,8,4,4] = Relu (n1)
  node conv2: y: f32[N,6,4,4] = Conv {} (r1, w2, b2)
  output y
}}
",
        weight("w1", &[8, 3, 2, 2], 1, 0.0),
        weight("b1", &[8], 2, 0.0),
        batchnorm_weights("bn", 8, 3),
        weight("w2", &[6, 8, 1, 1], 7, 0.0),
        weight("b2", &[6], 8, 0.0),
        conv_attrs(2, 0, 1),
        conv_attrs(1, 0, 1),
    )
}

/// Two Convs joined by a residual Add, with a depthwise Conv, a PRelu and a
/// per-channel Mul in between, read by a final Conv.
pub fn residual_block() -> String {
    format!(
        "graph g {{
  input x: f32[N,3,5,5]
{}{}{}{}{}{}{}{}  node conv_a: a: f32[N,8,5,5] = Conv {} (x, w_a, b_a)
  node relu_a: ra: f32[N,8,5,5] = Relu (a)
  node dw: d: f32[N,8,5,5] = Conv {} (ra, w_d)
  node prelu: p: f32[N,8,5,5] = PRelu (d, slope)
  node conv_b: b: f32[N,8,5,5] = Conv {} (p, w_b)
  node add: s: f32[N,8,5,5] = Add (ra, b)
  node scale: m: f32[N,8,5,5] = Mul (s, k)
  node conv_c: y: f32[N,4,5,5] = Conv {} (m, w_c, b_c)
  output y
}}
",
        weight("w_a", &[8, 3, 1, 1], 11, 0.0),
        weight("b_a", &[8], 12, 0.0),
        weight("w_d", &[8, 1, 3, 3], 13, 0.0),
        weight("slope", &[8, 1, 1], 14, 0.0),
        weight("w_b", &[8, 8, 1, 1], 15, 0.0),
        weight("k", &[1, 8, 1, 1], 16, 1.0),
        weight("w_c", &[4, 8, 1, 1], 17, 0.0),
        weight("b_c", &[4], 18, 0.0),
        conv_attrs(1, 0, 1),
        conv_attrs(3, 1, 8),
        conv_attrs(1, 0, 1),
        conv_attrs(1, 0, 1),
    )
}

/// A residual Add of a Conv's output and the graph input.
pub fn residual_with_input() -> String {
    format!(
        "graph g {{
  input x: f32[N,8,3,3]
{}{}  node conv1: c1: f32[N,8,3,3] = Conv {} (x, w1)
  node add: s: f32[N,8,3,3] = Add (c1, x)
  node conv2: y: f32[N,4,3,3] = Conv {} (s, w2)
  output y
}}
",
        weight("w1", &[8, 8, 1, 1], 21, 0.0),
        weight("w2", &[4, 8, 1, 1], 22, 0.0),
        conv_attrs(1, 0, 1),
        conv_attrs(1, 0, 1),
    )
}

/// Conv -> BatchNorm -> HardSwish -> squeeze-and-excitation (GAP, Conv,
/// bias Add, Relu, Conv, bias Add, HardSigmoid, Mul) -> GAP -> Flatten -> Gemm.
pub fn squeeze_excite_head() -> String {
    format!(
        "graph g {{
  input x: f32[N,3,6,6]
{}{}{}{}{}{}{}{}{}  node conv1: c1: f32[N,8,6,6] = Conv {} (x, w1, b1)
  node bn: n1: f32[N,8,6,6] = BatchNormalization {{\"epsilon\":1e-5}} (c1, bn_gamma, bn_beta, bn_mean, bn_var)
  node hs: h: f32[N,8,6,6] = HardSwish (n1)
  node gap1: g1: f32[N,8,1,1] = GlobalAveragePool (h)
  node se1: s1: f32[N,4,1,1] = Conv {} (g1, w_s1)
  node add_s1: s1b: f32[N,4,1,1] = Add (s1, b_s1)
  node relu_s: s1r: f32[N,4,1,1] = Relu (s1b)
  node se2: s2: f32[N,8,1,1] = Conv {} (s1r, w_s2)
  node add_s2: s2b: f32[N,8,1,1] = Add (s2, b_s2)
  node hsig: gate: f32[N,8,1,1] = HardSigmoid {{\"alpha\":0.2,\"beta\":0.5}} (s2b)
  node mul: m: f32[N,8,6,6] = Mul (h, gate)
  node gap2: g2: f32[N,8,1,1] = GlobalAveragePool (m)
  node flat: f: f32[N,8] = Flatten {{\"axis\":1}} (g2)
  node fc: y: f32[N,5] = Gemm {{\"alpha\":1.0,\"beta\":1.0,\"trans_a\":false,\"trans_b\":true}} (f, w_fc, b_fc)
  output y
}}
",
        weight("w1", &[8, 3, 3, 3], 31, 0.0),
        weight("b1", &[8], 32, 0.0),
        batchnorm_weights("bn", 8, 33),
        weight("w_s1", &[4, 8, 1, 1], 37, 0.0),
        weight("b_s1", &[1, 4, 1, 1], 38, 0.0),
        weight("w_s2", &[8, 4, 1, 1], 39, 0.0),
        weight("b_s2", &[1, 8, 1, 1], 40, 0.0),
        weight("w_fc", &[5, 8], 41, 0.0),
        weight("b_fc", &[5], 42, 0.0),
        conv_attrs(3, 1, 1),
        conv_attrs(1, 0, 1),
        conv_attrs(1, 0, 1),
    )
}

/// Two Convs' outputs concatenated on the channel axis, read by a Conv.
pub fn channel_concat() -> String {
    format!(
        "graph g {{
  input x: f32[N,3,4,4]
{}{}{}  node conv_a: a: f32[N,4,4,4] = Conv {} (x, w_a)
  node conv_b: b: f32[N,6,4,4] = Conv {} (x, w_b)
  node relu_b: rb: f32[N,6,4,4] = Relu (b)
  node cat: c: f32[N,10,4,4] = Concat {{\"axis\":1}} (a, rb)
  node conv_c: y: f32[N,2,4,4] = Conv {} (c, w_c)
  output y
}}
",
        weight("w_a", &[4, 3, 1, 1], 51, 0.0),
        weight("w_b", &[6, 3, 1, 1], 52, 0.0),
        weight("w_c", &[2, 10, 1, 1], 53, 0.0),
        conv_attrs(1, 0, 1),
        conv_attrs(1, 0, 1),
        conv_attrs(1, 0, 1),
    )
}

/// Conv -> GlobalAveragePool -> Reshape to `[N, target]` with the batch size
/// read by Shape -> MatMul: `target` is `-1` (follows the channels) or the
/// channel count `8` (does not).
pub fn computed_flatten(target: i64) -> String {
    format!(
        "graph g {{
  input x: f32[N,3,4,4]
{}{}  weight tail: i64[1] = [{target}]
  node conv1: c: f32[N,8,4,4] = Conv {} (x, w1)
  node gap: p: f32[N,8,1,1] = GlobalAveragePool (c)
  node shape: s: i64[1] = Shape {{\"start\":0,\"end\":1}} (p)
  node cat: t: i64[2] = Concat {{\"axis\":0}} (s, tail)
  node flat: f: f32[N,8] = Reshape {{\"allowzero\":false}} (p, t)
  node fc: y: f32[N,3] = MatMul (f, w_fc)
  output y
}}
",
        weight("w1", &[8, 3, 1, 1], 61, 0.0),
        weight("w_fc", &[8, 3], 62, 0.0),
        conv_attrs(1, 0, 1),
    )
}

pub fn parse_graph(text: &str) -> Graph {
    parse(text).unwrap()
}

pub fn random_input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), values(shape, seed, 0.0)).unwrap())
}

pub fn weight_values(g: &Graph, name: &str) -> Vec<f64> {
    let w = named_weight(g, name);
    Tensor::from_bytes(w.dtype, &w.shape, &w.data)
        .unwrap()
        .to_f64_vec()
}

pub fn weight_shape(g: &Graph, name: &str) -> Vec<usize> {
    named_weight(g, name).shape.clone()
}

fn named_weight<'g>(g: &'g Graph, name: &str) -> &'g Weight {
    let v = crate::ir::verify::live_values(g)
        .into_iter()
        .find(|&v| g.value(v).name == name && g.weight_of(v).is_some())
        .unwrap_or_else(|| panic!("no weight named {name}"));
    g.weight_of(v).unwrap()
}

/// The graph with `indices` of `axis` of weight `name` set to zero: the
/// reference a channel slice must reproduce.
pub fn zero_channels(g: &mut Graph, name: &str, axis: usize, indices: &[usize]) {
    let v = crate::ir::verify::live_values(g)
        .into_iter()
        .find(|&v| g.value(v).name == name && g.weight_of(v).is_some())
        .unwrap();
    let w = g.weight_of(v).unwrap().clone();
    let inner: usize = w.shape[axis + 1..].iter().product();
    let dim = w.shape[axis];
    let flat: Vec<usize> = (0..w.element_count() as usize)
        .filter(|i| indices.contains(&((i / inner) % dim)))
        .collect();
    let zeroed = zero_elements(&w, &flat).unwrap();
    let mut p = Patch::new("test_reference");
    let new = p.add_weight(zeroed);
    p.redirect(v, new);
    p.apply(g).unwrap();
}

#[test]
fn the_test_graphs_parse_and_run() {
    for (text, shape) in [
        (conv_bn_relu_conv(), [1, 3, 5, 5]),
        (residual_block(), [1, 3, 5, 5]),
        (residual_with_input(), [1, 8, 3, 3]),
        (squeeze_excite_head(), [1, 3, 6, 6]),
        (channel_concat(), [1, 3, 4, 4]),
        (computed_flatten(-1), [1, 3, 4, 4]),
        (computed_flatten(8), [1, 3, 4, 4]),
    ] {
        let g = parse_graph(&text);
        crate::ir::verify::verify(&g).unwrap();
        crate::ir::eval::run(&g, vec![random_input(&shape, 1)]).unwrap();
    }
}
