use crate::formats::target::Support;
use crate::formats::tflite::lower::{IoLayout, LowerOptions, lower, support};
use crate::formats::tflite::model::{TensorId, TflModel, TflOperator};
use crate::formats::tflite::schema as tfl;
use crate::ir::Graph;
use crate::ir::text::parse;

use tfl::BuiltinOperator as B;

fn graph(text: &str) -> Graph {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Lowers `text`, whose nodes must all be supported.
fn convert(text: &str, io_layout: IoLayout) -> TflModel {
    let g = graph(text);
    for (id, node) in g.nodes() {
        assert_eq!(support(&g, id), Support::Native, "node {}", node.name);
    }
    let opts = LowerOptions {
        io_layout,
        ..Default::default()
    };
    lower(&g, &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn nhwc(text: &str) -> TflModel {
    convert(text, IoLayout::ChannelsLast)
}

/// The reason the single node of `text` is unsupported.
fn unsupported(text: &str) -> String {
    let g = graph(text);
    let (id, _) = g.nodes().next().expect("one node");
    match support(&g, id) {
        Support::Unsupported(why) => why,
        other => panic!("expected unsupported, got {other:?}"),
    }
}

fn codes(m: &TflModel) -> Vec<B> {
    m.operators.iter().map(|o| o.code).collect()
}

fn find(m: &TflModel, code: B) -> &TflOperator {
    m.operators
        .iter()
        .find(|o| o.code == code)
        .unwrap_or_else(|| panic!("no {code:?} in {:?}", codes(m)))
}

fn input(op: &TflOperator, i: usize) -> TensorId {
    op.inputs[i].expect("input present")
}

fn shape(m: &TflModel, t: TensorId) -> Vec<i32> {
    m.tensor(t).shape.clone()
}

fn f32s(m: &TflModel, t: TensorId) -> Vec<f32> {
    let data = m.tensor(t).data.as_ref().expect("constant");
    data.chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i32s(m: &TflModel, t: TensorId) -> Vec<i32> {
    let data = m.tensor(t).data.as_ref().expect("constant");
    data.chunks(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn range(n: usize) -> String {
    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

fn conv_attrs(strides: &str, pads: &str, group: usize, extra: &str) -> String {
    format!(
        "{{\"kernel_shape\":null,\"strides\":{strides},\"dilations\":[],\"padding\":{{\"Explicit\":{pads}}},\"group\":{group}{extra}}}"
    )
}

fn conv2d_options(op: &TflOperator) -> &tfl::Conv2DOptionsT {
    match &op.options {
        tfl::BuiltinOptionsT::Conv2DOptions(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn conv_weights_become_ohwi_with_a_zero_bias() {
    let a = conv_attrs("[1,1]", "[0,0,0,0]", 1, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,3,3]
  weight w: f32[3,2,1,2] = [{}]
  node c: y: f32[1,3,3,2] = Conv {a} (x, w, _)
  output y
}}",
        range(12)
    ));
    assert_eq!(codes(&m), [B::CONV_2D]);
    let op = find(&m, B::CONV_2D);
    assert_eq!(op.version, 1);
    assert_eq!(conv2d_options(op).padding, tfl::Padding::VALID);
    let filter = input(op, 1);
    assert_eq!(shape(&m, filter), [3, 1, 2, 2]);
    assert_eq!(
        f32s(&m, filter),
        [0., 2., 1., 3., 4., 6., 5., 7., 8., 10., 9., 11.]
    );
    let bias = input(op, 2);
    assert_eq!(f32s(&m, bias), [0.0; 3]);
    assert_eq!(shape(&m, op.outputs[0]), [1, 3, 2, 3]);
    assert_eq!(m.outputs, op.outputs);
}

#[test]
fn pads_equal_to_same_need_no_pad() {
    let a = conv_attrs("[2,2]", "[1,1,1,1]", 1, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,1,5,5]
  weight w: f32[1,1,3,3] = [{}]
  weight b: f32[1] = [0.5]
  node c: y: f32[1,1,3,3] = Conv {a} (x, w, b)
  output y
}}",
        range(9)
    ));
    assert_eq!(codes(&m), [B::CONV_2D]);
    let op = find(&m, B::CONV_2D);
    assert_eq!(conv2d_options(op).padding, tfl::Padding::SAME);
    assert_eq!(conv2d_options(op).stride_h, 2);
    assert_eq!(f32s(&m, input(op, 2)), [0.5]);
}

#[test]
fn other_pads_become_a_pad_before_a_valid_conv() {
    let a = conv_attrs("[1,1]", "[0,0,1,1]", 1, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,1,4,4]
  weight w: f32[1,1,3,3] = [{}]
  node c: y: f32[1,1,3,3] = Conv {a} (x, w, _)
  output y
}}",
        range(9)
    ));
    assert_eq!(codes(&m), [B::PAD, B::CONV_2D]);
    let pad = find(&m, B::PAD);
    assert_eq!(i32s(&m, input(pad, 1)), [0, 0, 0, 1, 0, 1, 0, 0]);
    assert_eq!(shape(&m, pad.outputs[0]), [1, 5, 5, 1]);
    assert_eq!(
        conv2d_options(find(&m, B::CONV_2D)).padding,
        tfl::Padding::VALID
    );
}

#[test]
fn group_equal_to_channels_is_depthwise() {
    let a = conv_attrs("[1,1]", "[1,1,1,1]", 2, ",\"activation\":\"Relu6\"");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,4,4]
  weight w: f32[4,1,3,3] = [{}]
  node c: y: f32[1,4,4,4] = Conv {a} (x, w, _)
  output y
}}",
        range(36)
    ));
    assert_eq!(codes(&m), [B::DEPTHWISE_CONV_2D]);
    let op = find(&m, B::DEPTHWISE_CONV_2D);
    let filter = input(op, 1);
    assert_eq!(shape(&m, filter), [1, 3, 3, 4]);
    assert_eq!(f32s(&m, filter)[..8], [0., 9., 18., 27., 1., 10., 19., 28.]);
    match &op.options {
        tfl::BuiltinOptionsT::DepthwiseConv2DOptions(o) => {
            assert_eq!(o.depth_multiplier, 2);
            assert_eq!(o.padding, tfl::Padding::SAME);
            assert_eq!(
                o.fused_activation_function,
                tfl::ActivationFunctionType::RELU6
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn grouped_conv_is_one_conv_2d_with_fewer_filter_channels() {
    let a = conv_attrs("[1,1]", "[0,0,0,0]", 2, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,4,2,2]
  weight w: f32[4,2,1,1] = [{}]
  node c: y: f32[1,4,2,2] = Conv {a} (x, w, _)
  output y
}}",
        range(8)
    ));
    assert_eq!(codes(&m), [B::CONV_2D]);
    let op = find(&m, B::CONV_2D);
    assert_eq!(op.version, 6);
    assert_eq!(shape(&m, input(op, 1)), [4, 1, 1, 2]);
    assert_eq!(f32s(&m, input(op, 1)), [0., 1., 2., 3., 4., 5., 6., 7.]);
}

#[test]
fn one_d_conv_runs_as_2d_between_reshapes() {
    let a = conv_attrs("[]", "[1,1]", 1, ",\"activation\":\"Sigmoid\"");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,5]
  weight w: f32[3,2,3] = [{}]
  node c: y: f32[1,3,5] = Conv {a} (x, w, _)
  output y
}}",
        range(18)
    ));
    assert_eq!(codes(&m), [B::RESHAPE, B::CONV_2D, B::LOGISTIC, B::RESHAPE]);
    let op = find(&m, B::CONV_2D);
    assert_eq!(shape(&m, input(op, 0)), [1, 1, 5, 2]);
    assert_eq!(shape(&m, input(op, 1)), [3, 1, 3, 2]);
    assert_eq!(conv2d_options(op).padding, tfl::Padding::SAME);
    assert_eq!(shape(&m, m.outputs[0]), [1, 5, 3]);
}

#[test]
fn a_cnn_has_one_transpose_at_each_boundary_and_none_in_nhwc() {
    let a = conv_attrs("[1,1]", "[1,1,1,1]", 1, ",\"activation\":\"HardSwish\"");
    let text = format!(
        "graph g {{
  input x: f32[1,3,8,8]
  weight w: f32[4,3,3,3] = [{}]
  weight dw: f32[4,1,3,3] = [{}]
  node c1: a: f32[1,4,8,8] = Conv {a} (x, w, _)
  node c2: b: f32[1,4,8,8] = Conv {} (a, dw, _)
  node p: y: f32[1,4,1,1] = GlobalAveragePool (b)
  node m: z: f32[1,4,4,4] = MaxPool {{\"kernel_shape\":[2,2],\"strides\":[2,2],\"dilations\":[],\"padding\":{{\"Explicit\":[0,0,0,0]}},\"ceil_mode\":false,\"count_include_pad\":false}} (b)
  output y, z
}}",
        range(108),
        range(36),
        conv_attrs("[1,1]", "[1,1,1,1]", 4, "")
    );
    let m = nhwc(&text);
    assert!(!codes(&m).contains(&B::TRANSPOSE), "{:?}", codes(&m));
    let m = convert(&text, IoLayout::Source);
    let transposes = codes(&m).iter().filter(|&&c| c == B::TRANSPOSE).count();
    // The input, and the 4x4 output (the 1x1 one is a reshape).
    assert_eq!(transposes, 2, "{:?}", codes(&m));
}

#[test]
fn conv_transpose_valid_and_same() {
    let t = |pads: &str, extra: &str, out: usize| {
        format!(
            "graph g {{
  input x: f32[1,1,3,3]
  weight w: f32[1,2,3,3] = [{}]
  node c: y: f32[1,2,{out},{out}] = ConvTranspose {{\"kernel_shape\":null,\"strides\":[2,2],\"dilations\":[],\"padding\":{{\"Explicit\":{pads}}},\"group\":1,\"output_padding\":[]{extra},\"output_shape\":null}} (x, w, _)
  output y
}}",
            range(18)
        )
    };
    let m = nhwc(&t("[0,0,0,0]", "", 7));
    assert_eq!(codes(&m), [B::TRANSPOSE_CONV]);
    let op = find(&m, B::TRANSPOSE_CONV);
    assert_eq!(i32s(&m, input(op, 0)), [1, 7, 7, 2]);
    assert_eq!(shape(&m, input(op, 1)), [2, 3, 3, 1]);
    assert_eq!(
        f32s(&m, input(op, 1)),
        (0..18).map(|v| v as f32).collect::<Vec<_>>()
    );
    assert_eq!(f32s(&m, input(op, 3)), [0.0, 0.0]);
    let padding = |op: &TflOperator| match &op.options {
        tfl::BuiltinOptionsT::TransposeConvOptions(o) => o.padding,
        other => panic!("{other:?}"),
    };
    assert_eq!(padding(op), tfl::Padding::VALID);

    let m = nhwc(&t("[1,1,1,1]", "", 5));
    assert_eq!(codes(&m), [B::TRANSPOSE_CONV]);
    assert_eq!(padding(find(&m, B::TRANSPOSE_CONV)), tfl::Padding::SAME);

    let m =
        nhwc(&t("[1,1,1,1]", "", 6).replace("\"output_padding\":[]", "\"output_padding\":[1,1]"));
    assert_eq!(codes(&m), [B::TRANSPOSE_CONV, B::SLICE]);
    let op = find(&m, B::TRANSPOSE_CONV);
    assert_eq!(padding(op), tfl::Padding::VALID);
    assert_eq!(i32s(&m, input(op, 0)), [1, 7, 7, 2]);
    let slice = find(&m, B::SLICE);
    assert_eq!(i32s(&m, input(slice, 1)), [0, 1, 1, 0]);
    assert_eq!(i32s(&m, input(slice, 2)), [1, 6, 6, 2]);
}

#[test]
fn grouped_conv_transpose_splits_the_channels() {
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,4,3,3]
  weight w: f32[4,1,3,3] = [{}]
  weight b: f32[2] = [1,2]
  node c: y: f32[1,2,5,5] = ConvTranspose {{\"kernel_shape\":null,\"strides\":[2,2],\"dilations\":[],\"padding\":{{\"Explicit\":[1,1,1,1]}},\"group\":2,\"output_padding\":[],\"output_shape\":null}} (x, w, b)
  output y
}}",
        range(36)
    ));
    assert_eq!(
        codes(&m),
        [
            B::SPLIT,
            B::TRANSPOSE_CONV,
            B::TRANSPOSE_CONV,
            B::CONCATENATION
        ]
    );
    let second = m
        .operators
        .iter()
        .filter(|o| o.code == B::TRANSPOSE_CONV)
        .nth(1)
        .unwrap();
    let filter = input(second, 1);
    assert_eq!(shape(&m, filter), [1, 3, 3, 2]);
    // Group 1 holds input channels 2 and 3: W[2, 0, 0, 0] = 18, W[3, 0, 0, 0] = 27.
    assert_eq!(f32s(&m, filter)[..2], [18., 27.]);
    assert_eq!(f32s(&m, input(second, 3)), [2.0]);
}

#[test]
fn dilated_conv_transpose_gets_zero_taps_and_short_outputs_a_longer_kernel() {
    let m = nhwc(
        "graph g {
  input x: f32[1,1,3,3]
  weight w: f32[1,1,2,2] = [1,2,3,4]
  node c: y: f32[1,1,5,5] = ConvTranspose {\"kernel_shape\":null,\"strides\":[],\"dilations\":[2,2],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1,\"output_padding\":[],\"output_shape\":null} (x, w, _)
  output y
}",
    );
    let op = find(&m, B::TRANSPOSE_CONV);
    assert_eq!(shape(&m, input(op, 1)), [1, 3, 3, 1]);
    assert_eq!(f32s(&m, input(op, 1)), [1., 0., 2., 0., 0., 0., 3., 0., 4.]);

    let m = nhwc(
        "graph g {
  input x: f32[1,1,2,2]
  weight w: f32[1,1,1,1] = [3]
  node c: y: f32[1,1,5,5] = ConvTranspose {\"kernel_shape\":null,\"strides\":[2,2],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1,\"output_padding\":[2,2],\"output_shape\":null} (x, w, _)
  output y
}",
    );
    assert_eq!(codes(&m), [B::TRANSPOSE_CONV]);
    let op = find(&m, B::TRANSPOSE_CONV);
    assert_eq!(i32s(&m, input(op, 0)), [1, 5, 5, 1]);
    assert_eq!(f32s(&m, input(op, 1)), [3., 0., 0., 0.]);
}

fn pool(op: &str, kernel: &str, strides: &str, pads: &str, ceil: bool, include: bool) -> String {
    format!(
        "{op} {{\"kernel_shape\":{kernel},\"strides\":{strides},\"dilations\":[],\"padding\":{pads},\"ceil_mode\":{ceil},\"count_include_pad\":{include}}}"
    )
}

fn pool2d_options(op: &TflOperator) -> &tfl::Pool2DOptionsT {
    match &op.options {
        tfl::BuiltinOptionsT::Pool2DOptions(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_pool_paddings() {
    let one = |p: &str, x: usize, y: usize| {
        nhwc(&format!(
            "graph g {{
  input x: f32[1,1,{x},{x}]
  node p: y: f32[1,1,{y},{y}] = {p} (x)
  output y
}}"
        ))
    };
    let m = one(
        &pool("MaxPool", "[3,3]", "[2,2]", "\"SameUpper\"", false, false),
        5,
        3,
    );
    assert_eq!(codes(&m), [B::MAX_POOL_2D]);
    let options = pool2d_options(find(&m, B::MAX_POOL_2D));
    assert_eq!(options.padding, tfl::Padding::SAME);
    assert_eq!((options.filter_height, options.stride_w), (3, 2));

    // Ceil mode whose extra window TFLite's SAME produces too.
    let m = one(
        &pool(
            "MaxPool",
            "[3,3]",
            "[2,2]",
            "{\"Explicit\":[0,0,0,0]}",
            true,
            false,
        ),
        4,
        2,
    );
    assert_eq!(codes(&m), [B::MAX_POOL_2D]);

    let m = one(
        &pool(
            "MaxPool",
            "[2,2]",
            "[1,1]",
            "{\"Explicit\":[1,1,0,0]}",
            false,
            false,
        ),
        4,
        4,
    );
    assert_eq!(codes(&m), [B::PADV2, B::MAX_POOL_2D]);
    let pad = find(&m, B::PADV2);
    assert_eq!(i32s(&m, input(pad, 1)), [0, 0, 1, 0, 1, 0, 0, 0]);
    assert_eq!(f32s(&m, input(pad, 2)), [f32::MIN]);
    assert_eq!(
        pool2d_options(find(&m, B::MAX_POOL_2D)).padding,
        tfl::Padding::VALID
    );
}

#[test]
fn average_pool_divisors() {
    let one = |p: &str, x: usize, y: usize| {
        nhwc(&format!(
            "graph g {{
  input x: f32[1,1,{x},{x}]
  node p: y: f32[1,1,{y},{y}] = {p} (x)
  output y
}}"
        ))
    };
    // Padded cells count: a zero PAD, then a VALID average.
    let m = one(
        &pool(
            "AveragePool",
            "[3,3]",
            "[1,1]",
            "{\"Explicit\":[1,1,1,1]}",
            false,
            true,
        ),
        3,
        3,
    );
    assert_eq!(codes(&m), [B::PAD, B::AVERAGE_POOL_2D]);
    // ... they do not: SAME.
    let m = one(
        &pool(
            "AveragePool",
            "[3,3]",
            "[1,1]",
            "{\"Explicit\":[1,1,1,1]}",
            false,
            false,
        ),
        3,
        3,
    );
    assert_eq!(codes(&m), [B::AVERAGE_POOL_2D]);
    assert_eq!(
        pool2d_options(find(&m, B::AVERAGE_POOL_2D)).padding,
        tfl::Padding::SAME
    );
    // Pads TFLite cannot place: the sums rescaled per output cell.
    let m = one(
        &pool(
            "AveragePool",
            "[2,2]",
            "[1,1]",
            "{\"Explicit\":[1,1,0,0]}",
            false,
            false,
        ),
        3,
        3,
    );
    assert_eq!(codes(&m), [B::PAD, B::AVERAGE_POOL_2D, B::MUL, B::MUL]);
    let factors: Vec<(Vec<i32>, Vec<f32>)> = m
        .operators
        .iter()
        .filter(|o| o.code == B::MUL)
        .map(|o| (shape(&m, input(o, 1)), f32s(&m, input(o, 1))))
        .collect();
    // The first row and column see one input cell of two.
    assert_eq!(
        factors,
        [
            (vec![1, 3, 1, 1], vec![2., 1., 1.]),
            (vec![1, 1, 3, 1], vec![2., 1., 1.])
        ]
    );
    let m = one(
        &pool(
            "AveragePool",
            "[2,2]",
            "[2,2]",
            "{\"Explicit\":[0,0,0,0]}",
            true,
            false,
        ),
        5,
        3,
    );
    assert_eq!(codes(&m), [B::AVERAGE_POOL_2D]);
}

#[test]
fn global_pools_reduce_the_stored_spatial_axes() {
    let text = "graph g {
  input x: f32[1,3,4,4]
  node p: y: f32[1,3,1,1] = GlobalAveragePool (x)
  output y
}";
    let m = nhwc(text);
    assert_eq!(codes(&m), [B::MEAN]);
    let op = find(&m, B::MEAN);
    assert_eq!(i32s(&m, input(op, 1)), [1, 2]);
    assert_eq!(shape(&m, op.outputs[0]), [1, 1, 1, 3]);
    let m = convert(
        &text.replace("GlobalAveragePool", "GlobalMaxPool"),
        IoLayout::Source,
    );
    assert_eq!(codes(&m), [B::REDUCE_MAX]);
    assert_eq!(i32s(&m, input(find(&m, B::REDUCE_MAX), 1)), [2, 3]);
}

fn resize(mode: &str, transform: &str, nearest: &str) -> String {
    format!(
        "Resize {{\"mode\":\"{mode}\",\"coordinate_transform\":\"{transform}\",\"nearest_mode\":\"{nearest}\",\"cubic_coeff_a\":-0.75,\"exclude_outside\":false,\"extrapolation_value\":0.0,\"antialias\":false,\"keep_aspect_ratio_policy\":\"Stretch\",\"axes\":null}}"
    )
}

fn resize_graph(op: &str, from: usize, to: usize) -> String {
    let s = to as f32 / from as f32;
    format!(
        "graph g {{
  input x: f32[1,2,{from},{from}]
  weight s: f32[4] = [1,1,{s},{s}]
  node r: y: f32[1,2,{to},{to}] = {op} (x, _, s, _)
  output y
}}"
    )
}

fn resize_flags(m: &TflModel) -> (B, bool, bool) {
    let op = &m.operators[0];
    match &op.options {
        tfl::BuiltinOptionsT::ResizeBilinearOptions(o) => {
            (op.code, o.align_corners, o.half_pixel_centers)
        }
        tfl::BuiltinOptionsT::ResizeNearestNeighborOptions(o) => {
            (op.code, o.align_corners, o.half_pixel_centers)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn resize_picks_the_tflite_mapping_that_reproduces_onnx() {
    let n = B::RESIZE_NEAREST_NEIGHBOR;
    let l = B::RESIZE_BILINEAR;
    let cases = [
        (
            resize("Nearest", "Asymmetric", "Floor"),
            2,
            4,
            (n, false, false),
        ),
        (
            resize("Nearest", "HalfPixel", "RoundPreferFloor"),
            2,
            4,
            (n, false, false),
        ),
        (
            resize("Nearest", "HalfPixel", "RoundPreferCeil"),
            4,
            2,
            (n, false, true),
        ),
        (
            resize("Nearest", "AlignCorners", "RoundPreferCeil"),
            3,
            5,
            (n, true, false),
        ),
        (
            resize("Linear", "HalfPixel", "RoundPreferFloor"),
            2,
            4,
            (l, false, true),
        ),
        (
            resize("Linear", "PytorchHalfPixel", "RoundPreferFloor"),
            3,
            6,
            (l, false, true),
        ),
        (
            resize("Linear", "AlignCorners", "RoundPreferFloor"),
            2,
            4,
            (l, true, false),
        ),
        (
            resize("Linear", "Asymmetric", "RoundPreferFloor"),
            3,
            6,
            (l, false, false),
        ),
    ];
    for (op, from, to, want) in cases {
        let m = nhwc(&resize_graph(&op, from, to));
        assert_eq!(resize_flags(&m), want, "{op} {from} -> {to}");
        assert_eq!(i32s(&m, input(&m.operators[0], 1)), [to as i32, to as i32]);
    }
}

#[test]
fn resize_from_sizes() {
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,3,3]
  weight s: i64[4] = [1,2,6,6]
  node r: y: f32[1,2,6,6] = {} (x, _, _, s)
  output y
}}",
        resize("Linear", "HalfPixel", "RoundPreferFloor")
    ));
    assert_eq!(resize_flags(&m), (B::RESIZE_BILINEAR, false, true));
}

#[test]
fn resizes_no_builtin_reproduces_become_weighted_gathers() {
    let count = |m: &TflModel, code: B| codes(m).iter().filter(|&&c| c == code).count();
    // Cubic: four taps per axis.
    let m = nhwc(&resize_graph(
        &resize("Cubic", "HalfPixel", "RoundPreferFloor"),
        4,
        8,
    ));
    assert_eq!(
        (count(&m, B::GATHER), count(&m, B::MUL), count(&m, B::ADD)),
        (8, 8, 6)
    );
    let gather = find(&m, B::GATHER);
    match &gather.options {
        tfl::BuiltinOptionsT::GatherOptions(o) => assert_eq!(o.axis, 1),
        other => panic!("{other:?}"),
    }
    // Nearest rounding no TFLite kernel has: one gather per axis, unweighted.
    let m = nhwc(&resize_graph(
        &resize("Nearest", "Asymmetric", "Ceil"),
        2,
        4,
    ));
    assert_eq!(codes(&m), [B::GATHER, B::GATHER]);
    assert_eq!(i32s(&m, input(&m.operators[0], 1)), [0, 1, 1, 1]);
    // Antialiased downscaling: the filter's taps.
    let m = nhwc(&resize_graph(
        &resize("Linear", "HalfPixel", "RoundPreferFloor")
            .replace("\"antialias\":false", "\"antialias\":true"),
        4,
        2,
    ));
    assert!(count(&m, B::GATHER) > 4, "{:?}", codes(&m));
    // tf_crop_and_resize outside the roi takes the extrapolation value.
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,1,4,4]
  weight r: f32[8] = [0,0,0.4,0.6,1,1,1.2,0.7]
  weight s: f32[4] = [1,1,1,1]
  node n: y: f32[1,1,4,4] = {} (x, r, s, _)
  output y
}}",
        resize("Linear", "TfCropAndResize", "RoundPreferFloor").replace(
            "\"extrapolation_value\":0.0",
            "\"extrapolation_value\":10.0"
        )
    ));
    let offsets: Vec<Vec<f32>> = m
        .operators
        .iter()
        .filter(|o| o.code == B::ADD && m.tensor(input(o, 1)).data.is_some())
        .map(|o| f32s(&m, input(o, 1)))
        .collect();
    // Rows 0.4..1.2 of 4: the last one samples past the end.
    assert_eq!(offsets, [vec![0.0, 0.0, 0.0, 10.0]]);
}

#[test]
fn resizes_that_need_runtime_values_are_refused() {
    let why = unsupported(
        "graph g {
  input x: f32[1,1,2,2]
  input s: f32[4]
  node r: y: f32[1,1,4,4] = RESIZE (x, _, s, _)
  output y
}"
        .replace("RESIZE", &resize("Linear", "HalfPixel", "RoundPreferFloor"))
        .as_str(),
    );
    assert!(why.contains("scales are computed"), "{why}");
    let why = unsupported(
        &resize_graph(&resize("Linear", "HalfPixel", "RoundPreferFloor"), 2, 4)
            .replace("f32[1,2,2,2]", "i32[1,2,2,2]")
            .replace("f32[1,2,4,4]", "i32[1,2,4,4]"),
    );
    assert!(why.contains("float32"), "{why}");
}

fn pad_graph(x: &str, y: &str, mode: &str, pads: &[i64], value: &str) -> String {
    let list = pads
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "graph g {{
  input x: {x}
  weight p: i64[{}] = [{list}]
  {value}
  node n: y: {y} = Pad {{\"mode\":\"{mode}\"}} (x, p{})
  output y
}}",
        pads.len(),
        if value.is_empty() { "" } else { ", v" }
    )
}

#[test]
fn constant_pads_in_the_stored_layout() {
    let m = convert(
        &pad_graph(
            "f32[1,2,3,3]",
            "f32[1,2,7,9]",
            "Constant",
            &[0, 0, 1, 2, 0, 0, 3, 4],
            "weight v: f32[] = [1.5]",
        ),
        IoLayout::Source,
    );
    assert_eq!(codes(&m), [B::PADV2]);
    let op = find(&m, B::PADV2);
    assert_eq!(i32s(&m, input(op, 1)), [0, 0, 0, 0, 1, 3, 2, 4]);
    assert_eq!(f32s(&m, input(op, 2)), [1.5]);

    // After a conv the value is channels-last; the pads follow it.
    let a = conv_attrs("[1,1]", "[0,0,0,0]", 1, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,3,3]
  weight w: f32[2,2,1,1] = [1,0,0,1]
  weight p: i64[8] = [0,0,1,2,0,0,3,4]
  weight v: f32[] = [0]
  node c: h: f32[1,2,3,3] = Conv {a} (x, w, _)
  node n: y: f32[1,2,7,9] = Pad {{\"mode\":\"Constant\"}} (h, p, v)
  output y
}}"
    ));
    assert_eq!(codes(&m), [B::CONV_2D, B::PAD]);
    assert_eq!(
        i32s(&m, input(find(&m, B::PAD), 1)),
        [0, 0, 1, 3, 2, 4, 0, 0]
    );

    let m = convert(
        &pad_graph("f32[1,4]", "f32[1,5]", "Constant", &[0, -1, 0, 2], ""),
        IoLayout::Source,
    );
    assert_eq!(codes(&m), [B::SLICE, B::PAD]);
    assert_eq!(i32s(&m, input(find(&m, B::SLICE), 1)), [0, 1]);
    assert_eq!(i32s(&m, input(find(&m, B::PAD), 1)), [0, 0, 0, 2]);
}

#[test]
fn reflect_edge_and_wrap_pads() {
    let m = convert(
        &pad_graph(
            "f32[1,1,3,3]",
            "f32[1,1,5,5]",
            "Reflect",
            &[0, 0, 1, 1, 0, 0, 1, 1],
            "",
        ),
        IoLayout::Source,
    );
    assert_eq!(codes(&m), [B::MIRROR_PAD]);
    let gathered = |mode: &str, pads: &[i64], y: &str| {
        let m = convert(&pad_graph("f32[1,3]", y, mode, pads, ""), IoLayout::Source);
        assert_eq!(codes(&m), [B::GATHER]);
        let op = find(&m, B::GATHER);
        match &op.options {
            tfl::BuiltinOptionsT::GatherOptions(o) => assert_eq!(o.axis, 1),
            other => panic!("{other:?}"),
        }
        i32s(&m, input(op, 1))
    };
    assert_eq!(
        gathered("Edge", &[0, 2, 0, 1], "f32[1,6]"),
        [0, 0, 0, 1, 2, 2]
    );
    assert_eq!(
        gathered("Wrap", &[0, 2, 0, 1], "f32[1,6]"),
        [1, 2, 0, 1, 2, 0]
    );
    assert_eq!(
        gathered("Reflect", &[0, 3, 0, 0], "f32[1,6]"),
        [1, 2, 1, 0, 1, 2]
    );
}

#[test]
fn depth_to_space_modes() {
    let text = |mode: &str| {
        format!(
            "graph g {{
  input x: f32[1,8,2,2]
  node d: y: f32[1,2,4,4] = DepthToSpace {{\"blocksize\":2,\"mode\":\"{mode}\"}} (x)
  output y
}}"
        )
    };
    let m = nhwc(&text("Dcr"));
    assert_eq!(codes(&m), [B::DEPTH_TO_SPACE]);
    let m = nhwc(&text("Crd"));
    assert_eq!(codes(&m), [B::GATHER, B::DEPTH_TO_SPACE]);
    assert_eq!(
        i32s(&m, input(find(&m, B::GATHER), 1)),
        [0, 4, 1, 5, 2, 6, 3, 7]
    );
    let m = nhwc(
        "graph g {
  input x: f32[1,2,4,4]
  node d: y: f32[1,8,2,2] = SpaceToDepth {\"blocksize\":2} (x)
  output y
}",
    );
    assert_eq!(codes(&m), [B::SPACE_TO_DEPTH]);
}

#[test]
fn unsupported_forms_say_why() {
    let a = conv_attrs("[1,1,1]", "[0,0,0,0,0,0]", 1, "");
    let why = unsupported(&format!(
        "graph g {{
  input x: f32[1,1,2,2,2]
  weight w: f32[1,1,1,1,1] = [1]
  node c: y: f32[1,1,2,2,2] = Conv {a} (x, w, _)
  output y
}}"
    ));
    assert!(why.contains("rank-5"), "{why}");
    let why = unsupported(
        "graph g {
  input x: f32[1,1,9,9,9]
  node p: y: f32[1,1,1,1,1] = MaxPool {\"kernel_shape\":[9,9,9],\"strides\":[],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0,0,0]},\"ceil_mode\":false,\"count_include_pad\":false} (x)
  output y
}",
    );
    assert!(why.contains("729-cell"), "{why}");
    let why = unsupported(
        "graph g {
  input x: f32[1,3]
  input p: i64[4]
  node n: y: f32[1,5] = Pad {\"mode\":\"Constant\"} (x, p)
  output y
}",
    );
    assert!(why.contains("pads are computed"), "{why}");
}

#[test]
fn computed_weights_are_reordered_by_ops() {
    let a = conv_attrs("[1,1]", "[1,1,1,1]", 1, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,4,4]
  input w: f32[3,2,3,3]
  node c: y: f32[1,3,4,4] = Conv {a} (x, w, _)
  output y
}}"
    ));
    // An NHWC weight input is already OHWI.
    assert_eq!(codes(&m), [B::CONV_2D]);
    assert_eq!(input(find(&m, B::CONV_2D), 1), m.inputs[1]);

    let a = conv_attrs("[1,1]", "[1,1,1,1]", 2, "");
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,4,4]
  input w: f32[4,1,3,3]
  node c: y: f32[1,4,4,4] = Conv {a} (x, w, _)
  output y
}}"
    ));
    assert_eq!(codes(&m), [B::TRANSPOSE, B::DEPTHWISE_CONV_2D]);
    let t = find(&m, B::TRANSPOSE);
    assert_eq!(i32s(&m, input(t, 1)), [3, 1, 2, 0]);
    assert_eq!(shape(&m, t.outputs[0]), [1, 3, 3, 4]);

    // Dilation 2 on a computed 2x2 kernel: zero rows and columns by PADs.
    let m = nhwc(
        "graph g {
  input x: f32[1,1,3,3]
  input w: f32[1,2,2,2]
  node c: y: f32[1,2,5,5] = ConvTranspose {\"kernel_shape\":null,\"strides\":[],\"dilations\":[2,2],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1,\"output_padding\":[],\"output_shape\":null} (x, w, _)
  output y
}",
    );
    let op = find(&m, B::TRANSPOSE_CONV);
    let filter = input(op, 1);
    assert_eq!(shape(&m, filter), [2, 3, 3, 1]);
    assert_eq!(codes(&m).iter().filter(|&&c| c == B::PAD).count(), 2);
    assert_eq!(codes(&m).last(), Some(&B::TRANSPOSE_CONV));
}

#[test]
fn eight_bit_max_pools_pad_with_the_type_minimum() {
    let m = nhwc(&format!(
        "graph g {{
  input x: i8[1,1,4,4]
  node p: y: i8[1,1,4,4] = {} (x)
  output y
}}",
        pool(
            "MaxPool",
            "[2,2]",
            "[1,1]",
            "{\"Explicit\":[1,1,0,0]}",
            false,
            false
        )
    ));
    assert_eq!(codes(&m), [B::PADV2, B::MAX_POOL_2D]);
    let value = input(find(&m, B::PADV2), 2);
    assert_eq!(m.tensor(value).dtype, tfl::TensorType::INT8);
    assert_eq!(m.tensor(value).data.as_deref(), Some(&[0x80u8][..]));
    assert_eq!(find(&m, B::MAX_POOL_2D).version, 2);
    let why = unsupported(
        "graph g {
  input x: u8[1,1,4,4]
  node p: y: u8[1,1,3,3] = AveragePool {\"kernel_shape\":[2,2],\"strides\":[1,1],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0]},\"ceil_mode\":false,\"count_include_pad\":false} (x)
  output y
}",
    );
    assert!(why.contains("f32"), "{why}");
}

#[test]
fn dilated_and_3d_pools_are_unrolled_into_strided_slices() {
    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,1,5,5]
  node p: y: f32[1,1,3,3] = {} (x)
  output y
}}",
        pool(
            "MaxPool",
            "[2,2]",
            "[1,1]",
            "{\"Explicit\":[0,0,0,0]}",
            false,
            false
        )
        .replace("\"dilations\":[]", "\"dilations\":[2,2]")
    ));
    let c = codes(&m);
    assert_eq!(c.iter().filter(|&&c| c == B::STRIDED_SLICE).count(), 4);
    assert_eq!(c.iter().filter(|&&c| c == B::MAXIMUM).count(), 3);
    // The last tap starts at (2, 2) and steps by 1.
    let last = m
        .operators
        .iter()
        .rfind(|o| o.code == B::STRIDED_SLICE)
        .unwrap();
    assert_eq!(i32s(&m, input(last, 1)), [0, 2, 2, 0]);
    assert_eq!(i32s(&m, input(last, 2)), [1, 5, 5, 1]);

    let m = nhwc(&format!(
        "graph g {{
  input x: f32[1,2,4,4,4]
  node p: y: f32[1,2,2,2,2] = {} (x)
  output y
}}",
        pool(
            "AveragePool",
            "[3,3,3]",
            "[2,2,2]",
            "{\"Explicit\":[1,1,1,0,0,0]}",
            false,
            false
        )
    ));
    let c = codes(&m);
    assert_eq!(c[0], B::PAD);
    assert_eq!(c.iter().filter(|&&c| c == B::STRIDED_SLICE).count(), 27);
    assert_eq!(c.iter().filter(|&&c| c == B::ADD).count(), 26);
    // Output position 0 of each axis sees two input cells of three.
    let muls: Vec<Vec<f32>> = m
        .operators
        .iter()
        .filter(|o| o.code == B::MUL)
        .map(|o| f32s(&m, input(o, 1)))
        .collect();
    assert_eq!(muls, vec![vec![0.5, 1.0 / 3.0]; 3]);
}

#[test]
fn degenerate_shapes_are_refused_not_lowered() {
    let why = unsupported(
        "graph g {
  input x: f32[1,3]
  weight p: i64[4] = [0,-3,0,1]
  node n: y: f32[1,1] = Pad {\"mode\":\"Constant\"} (x, p)
  output y
}",
    );
    assert!(why.contains("crop an axis away"), "{why}");
    let why = unsupported(
        "graph g {
  input x: f32[1,1,0,4]
  node p: y: f32[1,1,0,3] = MaxPool {\"kernel_shape\":[1,2],\"strides\":[],\"dilations\":[],\"padding\":{\"Explicit\":[0,0,0,0]},\"ceil_mode\":true,\"count_include_pad\":false} (x)
  output y
}",
    );
    assert!(why.contains("empty"), "{why}");
}
