//! The TFLite conv family in LiteRT with constant weights, pads and scales
//! (the ONNX node tests feed those as inputs, so they reach other paths):
//! IR graphs lowered and written by the TFLite target, run with the
//! reference kernels and with XNNPACK, compared with the IR reference
//! interpreter to 1e-4 of the output magnitude (exact for integers).

mod common;

use std::fmt::Write;

use common::litert::{Job, Resolver, run_batch};
use edgeconv::formats::target::Target;
use edgeconv::formats::tflite::lower::{IoLayout, LowerOptions};
use edgeconv::formats::tflite::target::TfliteTarget;
use edgeconv::ir::Tensor;
use edgeconv::ir::compare::{compare, tolerance_for};
use edgeconv::progress::Silent;
use ndarray::{ArrayD, IxDyn};

/// Deterministic values in [-1, 1).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn list(&mut self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            write!(s, "{:.4}", self.next()).unwrap();
        }
        s
    }
}

/// A graph with one input `x` of `x_shape` and output `y` (shape inferred).
struct Case {
    name: &'static str,
    x: &'static str,
    body: String,
    io: IoLayout,
}

fn case(name: &'static str, x: &'static str, body: String) -> Case {
    Case {
        name,
        x,
        body,
        io: IoLayout::Source,
    }
}

fn conv(strides: &str, pads: &str, dilations: &str, group: usize, activation: &str) -> String {
    let activation = if activation.is_empty() {
        String::new()
    } else {
        format!(",\"activation\":\"{activation}\"")
    };
    format!(
        "{{\"kernel_shape\":null,\"strides\":{strides},\"dilations\":{dilations},\"padding\":{pads},\"group\":{group}{activation}}}"
    )
}

fn conv_case(
    v: &mut Values,
    name: &'static str,
    x: &'static str,
    w: &[usize],
    attrs: String,
) -> Case {
    let n: usize = w.iter().product();
    let dims = w
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let body = format!(
        "  weight w: f32[{dims}] = [{}]\n  weight b: f32[{}] = [{}]\n  node c: y: f32[?] = Conv {attrs} (x, w, b)\n",
        v.list(n),
        w[0],
        v.list(w[0])
    );
    case(name, x, body)
}

fn transpose_case(
    v: &mut Values,
    name: &'static str,
    x: &'static str,
    w: &[usize],
    group: usize,
    rest: &str,
) -> Case {
    let n: usize = w.iter().product();
    let dims = w
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let o = w[1] * group;
    let body = format!(
        "  weight w: f32[{dims}] = [{}]\n  weight b: f32[{o}] = [{}]\n  node c: y: f32[?] = ConvTranspose {{\"kernel_shape\":null,\"group\":{group},\"output_shape\":null,{rest}}} (x, w, b)\n",
        v.list(n),
        v.list(o)
    );
    case(name, x, body)
}

fn pool(op: &str, kernel: &str, strides: &str, pads: &str, ceil: bool, include: bool) -> String {
    format!(
        "  node p: y: f32[?] = {op} {{\"kernel_shape\":{kernel},\"strides\":{strides},\"dilations\":[],\"padding\":{pads},\"ceil_mode\":{ceil},\"count_include_pad\":{include}}} (x)\n"
    )
}

fn resize(mode: &str, transform: &str, nearest: &str, extra: &str, inputs: &str) -> String {
    format!(
        "{extra}  node r: y: f32[?] = Resize {{\"mode\":\"{mode}\",\"coordinate_transform\":\"{transform}\",\"nearest_mode\":\"{nearest}\",\"cubic_coeff_a\":-0.75,\"exclude_outside\":false,\"extrapolation_value\":0.0,\"antialias\":false,\"keep_aspect_ratio_policy\":\"Stretch\",\"axes\":null}} {inputs}\n"
    )
}

fn pad(mode: &str, pads: &str, n: usize, value: &str) -> String {
    let (value_line, value_input) = if value.is_empty() {
        (String::new(), "")
    } else {
        (format!("  weight v: f32[] = [{value}]\n"), ", v")
    };
    format!(
        "  weight p: i64[{n}] = [{pads}]\n{value_line}  node n: y: f32[?] = Pad {{\"mode\":\"{mode}\"}} (x, p{value_input})\n"
    )
}

fn cases() -> Vec<Case> {
    let v = &mut Values(7);
    let e = |p: &str| format!("{{\"Explicit\":{p}}}");
    let mut cases = vec![
        conv_case(
            v,
            "conv_same",
            "[1,3,9,9]",
            &[4, 3, 3, 3],
            conv("[1,1]", &e("[1,1,1,1]"), "[]", 1, ""),
        ),
        conv_case(
            v,
            "conv_stride2_pad",
            "[1,3,10,10]",
            &[4, 3, 3, 3],
            conv("[2,2]", &e("[1,1,1,1]"), "[]", 1, "Relu6"),
        ),
        conv_case(
            v,
            "conv_asymmetric",
            "[1,3,7,8]",
            &[4, 3, 3, 2],
            conv("[1,2]", &e("[0,1,2,1]"), "[]", 1, ""),
        ),
        conv_case(
            v,
            "conv_dilated",
            "[1,2,9,9]",
            &[3, 2, 3, 3],
            conv("[1,1]", &e("[2,2,2,2]"), "[2,2]", 1, "Sigmoid"),
        ),
        conv_case(
            v,
            "conv_grouped",
            "[1,4,6,6]",
            &[6, 2, 3, 3],
            conv("[1,1]", &e("[1,1,1,1]"), "[]", 2, "HardSwish"),
        ),
        conv_case(
            v,
            "conv_depthwise",
            "[1,4,9,9]",
            &[4, 1, 3, 3],
            conv("[2,2]", &e("[1,1,1,1]"), "[]", 4, "Relu"),
        ),
        conv_case(
            v,
            "conv_depthwise_x2",
            "[1,3,6,6]",
            &[6, 1, 5, 5],
            conv("[1,1]", &e("[2,2,2,2]"), "[]", 3, "Tanh"),
        ),
        conv_case(
            v,
            "conv_1d",
            "[2,3,11]",
            &[4, 3, 3],
            conv("[2]", &e("[1,1]"), "[]", 1, ""),
        ),
        conv_case(
            v,
            "conv_same_lower",
            "[1,2,6,6]",
            &[3, 2, 2, 2],
            conv("[1,1]", "\"SameLower\"", "[]", 1, ""),
        ),
        conv_case(
            v,
            "conv_wide_pads",
            "[1,2,4,4]",
            &[3, 2, 3, 3],
            conv("[1,1]", &e("[4,3,4,3]"), "[]", 1, ""),
        ),
        transpose_case(
            v,
            "convt_valid",
            "[1,2,3,3]",
            &[2, 3, 3, 3],
            1,
            "\"strides\":[2,2],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0]},\"output_padding\":[]",
        ),
        transpose_case(
            v,
            "convt_same",
            "[1,4,4,4]",
            &[4, 2, 4, 4],
            1,
            "\"strides\":[2,2],\"dilations\":[],\"padding\":{\"Explicit\":[1,1,1,1]},\"output_padding\":[]",
        ),
        transpose_case(
            v,
            "convt_sliced",
            "[1,2,3,3]",
            &[2, 2, 3, 3],
            1,
            "\"strides\":[2,2],\"dilations\":[],\"padding\":{\"Explicit\":[1,1,1,1]},\"output_padding\":[1,1]",
        ),
        transpose_case(
            v,
            "convt_grouped",
            "[1,4,3,3]",
            &[4, 2, 3, 3],
            2,
            "\"strides\":[2,2],\"dilations\":[],\"padding\":{\"Explicit\":[0,1,1,0]},\"output_padding\":[]",
        ),
        transpose_case(
            v,
            "convt_dilated",
            "[1,2,4,4]",
            &[2, 2, 3, 3],
            1,
            "\"strides\":[],\"dilations\":[2,2],\"padding\":{\"Explicit\":[1,0,2,1]},\"output_padding\":[]",
        ),
        transpose_case(
            v,
            "convt_extended",
            "[1,1,3,3]",
            &[1, 2, 1, 1],
            1,
            "\"strides\":[3,2],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0]},\"output_padding\":[2,1]",
        ),
        transpose_case(
            v,
            "convt_1d",
            "[1,3,7]",
            &[3, 2, 4],
            1,
            "\"strides\":[3],\"dilations\":[],\"padding\":{\"Explicit\":[1,2]},\"output_padding\":[]",
        ),
        transpose_case(
            v,
            "convt_same_lower",
            "[1,2,3,3]",
            &[2, 2, 3, 3],
            1,
            "\"strides\":[2,2],\"dilations\":[],\"padding\":\"SameLower\",\"output_padding\":[]",
        ),
        case(
            "maxpool_padded",
            "[1,3,8,8]",
            pool("MaxPool", "[3,3]", "[2,2]", &e("[1,1,1,1]"), false, false),
        ),
        case(
            "maxpool_same",
            "[1,3,9,9]",
            pool("MaxPool", "[3,3]", "[2,2]", &e("[1,1,1,1]"), false, false),
        ),
        case(
            "maxpool_ceil",
            "[1,3,9,9]",
            pool("MaxPool", "[2,2]", "[2,2]", &e("[0,0,0,0]"), true, false),
        ),
        case(
            "maxpool_1d",
            "[1,3,11]",
            pool("MaxPool", "[3]", "[2]", &e("[1,1]"), false, false),
        ),
        case(
            "avgpool_excluded",
            "[1,3,7,8]",
            pool(
                "AveragePool",
                "[3,2]",
                "[1,2]",
                &e("[0,1,2,0]"),
                false,
                false,
            ),
        ),
        case(
            "avgpool_included",
            "[1,3,7,8]",
            pool(
                "AveragePool",
                "[3,2]",
                "[1,2]",
                &e("[0,1,2,0]"),
                false,
                true,
            ),
        ),
        case(
            "avgpool_ceil_included",
            "[1,3,10,10]",
            pool("AveragePool", "[3,3]", "[2,2]", &e("[1,1,1,1]"), true, true),
        ),
        case(
            "avgpool_same",
            "[1,3,9,9]",
            pool(
                "AveragePool",
                "[3,3]",
                "[2,2]",
                &e("[1,1,1,1]"),
                false,
                false,
            ),
        ),
        case(
            "maxpool_dilated",
            "[1,2,7,7]",
            pool("MaxPool", "[2,3]", "[1,2]", &e("[1,0,1,2]"), false, false)
                .replace("\"dilations\":[]", "\"dilations\":[2,2]"),
        ),
        case(
            "avgpool_dilated_ceil",
            "[1,2,8,8]",
            pool("AveragePool", "[3,3]", "[2,2]", &e("[1,1,1,1]"), true, true)
                .replace("\"dilations\":[]", "\"dilations\":[2,1]"),
        ),
        case(
            "maxpool_3d",
            "[1,2,5,6,5]",
            pool(
                "MaxPool",
                "[2,3,2]",
                "[2,2,1]",
                &e("[0,1,0,1,1,0]"),
                false,
                false,
            ),
        ),
        case(
            "avgpool_3d",
            "[1,2,5,5,6]",
            pool(
                "AveragePool",
                "[3,3,3]",
                "[2,2,2]",
                &e("[1,1,1,1,1,1]"),
                false,
                false,
            ),
        ),
        case(
            "global_average",
            "[2,3,5,6]",
            "  node p: y: f32[?] = GlobalAveragePool (x)\n".into(),
        ),
        case(
            "global_max",
            "[2,3,5,6]",
            "  node p: y: f32[?] = GlobalMaxPool (x)\n".into(),
        ),
        case(
            "resize_nearest",
            "[1,2,3,4]",
            resize(
                "Nearest",
                "HalfPixel",
                "RoundPreferFloor",
                "  weight s: f32[4] = [1,1,2,3]\n",
                "(x, _, s, _)",
            ),
        ),
        case(
            "resize_bilinear",
            "[1,2,3,4]",
            resize(
                "Linear",
                "HalfPixel",
                "RoundPreferFloor",
                "  weight s: f32[4] = [1,1,2,1.5]\n",
                "(x, _, s, _)",
            ),
        ),
        case(
            "resize_align_corners",
            "[1,2,3,4]",
            resize(
                "Linear",
                "AlignCorners",
                "RoundPreferFloor",
                "  weight s: i64[4] = [1,2,7,5]\n",
                "(x, _, _, s)",
            ),
        ),
        case(
            "resize_cubic_taps",
            "[1,2,5,5]",
            resize(
                "Cubic",
                "HalfPixel",
                "RoundPreferFloor",
                "  weight s: f32[4] = [1,1,2,0.6]\n",
                "(x, _, s, _)",
            ),
        ),
        case(
            "resize_ceil_taps",
            "[1,2,3,4]",
            resize(
                "Nearest",
                "Asymmetric",
                "Ceil",
                "  weight s: f32[4] = [1,1,2,2]\n",
                "(x, _, s, _)",
            ),
        ),
        case(
            "resize_crop_taps",
            "[1,2,6,6]",
            resize(
                "Linear",
                "TfCropAndResize",
                "RoundPreferFloor",
                "  weight r: f32[8] = [0,0,0.4,0.6,1,1,1.2,0.7]\n  weight s: i64[4] = [1,2,3,3]\n",
                "(x, r, _, s)",
            ),
        ),
        case(
            "pad_value",
            "[1,3,4,5]",
            pad("Constant", "0,1,1,2,0,0,3,4", 8, "2.5"),
        ),
        case(
            "pad_cropping",
            "[1,3,4,5]",
            pad("Constant", "0,0,-1,2,0,0,3,-2", 8, ""),
        ),
        case(
            "pad_reflect",
            "[1,3,4,5]",
            pad("Reflect", "0,0,2,3,0,0,3,4", 8, ""),
        ),
        case(
            "pad_edge",
            "[1,3,4,5]",
            pad("Edge", "0,0,2,3,0,0,4,5", 8, ""),
        ),
        case("pad_wrap", "[2,5]", pad("Wrap", "1,2,0,3", 4, "")),
        case(
            "depth_to_space",
            "[1,8,3,4]",
            "  node d: y: f32[?] = DepthToSpace {\"blocksize\":2,\"mode\":\"Dcr\"} (x)\n".into(),
        ),
        case(
            "depth_to_space_crd",
            "[1,18,2,2]",
            "  node d: y: f32[?] = DepthToSpace {\"blocksize\":3,\"mode\":\"Crd\"} (x)\n".into(),
        ),
        case(
            "space_to_depth",
            "[1,3,4,6]",
            "  node d: y: f32[?] = SpaceToDepth {\"blocksize\":2} (x)\n".into(),
        ),
    ];
    // Channels-last end to end: a conv, a reflect pad in NHWC, a depthwise conv.
    let mut nhwc = conv_case(
        v,
        "nhwc_chain",
        "[1,3,8,8]",
        &[4, 3, 3, 3],
        conv("[1,1]", &e("[1,1,1,1]"), "[]", 1, ""),
    );
    nhwc.body = nhwc.body.replace("y: f32[?] = Conv", "h: f32[?] = Conv")
        + &format!(
            "  weight p: i64[8] = [0,0,1,2,0,0,2,1]\n  node n: hp: f32[?] = Pad {{\"mode\":\"Reflect\"}} (h, p)\n  weight dw: f32[4,1,3,3] = [{}]\n  node d: y: f32[?] = Conv {} (hp, dw, _)\n",
            v.list(36),
            conv("[2,2]", &e("[0,0,0,0]"), "[]", 4, "")
        );
    nhwc.io = IoLayout::ChannelsLast;
    cases.push(nhwc);
    cases
}

fn graph_text(c: &Case) -> String {
    format!(
        "graph {} {{\n  input x: f32{}\n{}  output y\n}}\n",
        c.name, c.x, c.body
    )
}

fn input_for(shape: &[usize], seed: u64) -> Tensor {
    let mut v = Values(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| v.next() * 3.0).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

/// `t` with axis 1 moved last.
fn channels_last(t: &Tensor) -> Tensor {
    let Tensor::F32(a) = t else {
        panic!("float32 expected")
    };
    let rank = a.ndim();
    let mut perm: Vec<usize> = vec![0];
    perm.extend(2..rank);
    perm.push(1);
    Tensor::F32(
        a.clone()
            .permuted_axes(IxDyn(&perm))
            .as_standard_layout()
            .into_owned(),
    )
}

#[test]
fn conv_family_models_match_the_reference_in_litert() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (i, c) in cases().iter().enumerate() {
        let text = graph_text(c);
        let mut g = edgeconv::ir::text::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        edgeconv::ir::infer::infer_graph(&mut g).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let x_shape = g.fact(g.inputs[0]).shape.as_fixed().unwrap();
        let x = input_for(&x_shape, 100 + i as u64);
        let want = edgeconv::ir::eval::run(&g, vec![x.clone()])
            .unwrap_or_else(|e| panic!("{}: {e}", c.name))
            .remove(0);
        let target = TfliteTarget {
            lower: LowerOptions {
                io_layout: c.io,
                ..Default::default()
            },
            ..Default::default()
        };
        let path = dir.path().join(format!("{}.tflite", c.name));
        target
            .emit(&g, &path, &Silent)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let (x, want) = match c.io {
            IoLayout::Source => (x, want),
            IoLayout::ChannelsLast => (channels_last(&x), channels_last(&want)),
        };
        jobs.push(Job::new(&path).input("x", x));
        expected.push((c.name, want));
    }
    let results = run_batch(&jobs);
    assert_eq!(results.len(), jobs.len());
    println!("{} models, each with both resolvers", jobs.len());
    let mut failures = Vec::new();
    for ((name, want), result) in expected.iter().zip(&results) {
        for resolver in Resolver::BOTH {
            match &result.run(resolver).outcome {
                Err(e) => failures.push(format!("{name} [{resolver}]: {e}")),
                Ok(out) => {
                    let got = out.output("y");
                    let tolerance = tolerance_for(want.dtype(), 1e-4);
                    match compare(got, want) {
                        Ok(a) if a.within(tolerance) => {}
                        Ok(a) => failures.push(format!(
                            "{name} [{resolver}]: relative error {:.2e}",
                            a.relative_error()
                        )),
                        Err(e) => failures.push(format!("{name} [{resolver}]: {e}")),
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} runs disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
