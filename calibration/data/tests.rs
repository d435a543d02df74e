use std::fs;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use super::resample::Image8;
use super::*;
use crate::calibration::npy::{encode_npy, write_npz};
use crate::ir::error::exit;

fn f32s(shape: &[usize], start: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::F32(
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| start + i as f32).collect()).unwrap(),
    )
}

fn i64s(shape: &[usize], values: Vec<i64>) -> Tensor {
    Tensor::from_i64(shape, values).unwrap()
}

fn save(path: &Path, t: &Tensor) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, encode_npy(t).unwrap()).unwrap();
}

fn sig(name: &str, dtype: DType, dims: &[SigDim]) -> InputSig {
    InputSig {
        name: name.into(),
        dtype: Some(dtype),
        dims: Some(dims.to_vec()),
    }
}

fn n() -> SigDim {
    SigDim::Symbol("N".into())
}

/// x: f32[N, 3], ids: i64[N].
fn two_inputs() -> Signature {
    Signature {
        inputs: vec![
            sig("x", DType::F32, &[n(), SigDim::Fixed(3)]),
            sig("ids", DType::I64, &[n()]),
        ],
    }
}

fn open(spec: &DataSpec, signature: Signature) -> Result<Dataset> {
    Dataset::open_for(spec, signature)
}

fn arrays(dir: &Path) -> DataSpec {
    DataSpec::Arrays(dir.to_path_buf())
}

/// The error of `result`, which must be a bad-input error (exit 2)
/// mentioning every one of `needles`.
fn bad_input<T: fmt::Debug>(result: Result<T>, needles: &[&str]) -> String {
    let e = result.expect_err("expected an error");
    let text = e.to_string();
    assert_eq!(e.exit_code(), exit::BAD_INPUT, "{text}");
    for needle in needles {
        assert!(text.contains(needle), "'{needle}' not in: {text}");
    }
    text
}

#[test]
fn sample_folders_are_read_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    for (k, name) in ["b", "a", "c"].iter().enumerate() {
        let folder = dir.path().join(name);
        save(&folder.join("x.npy"), &f32s(&[k + 1, 3], k as f32));
        save(&folder.join("ids.npy"), &i64s(&[k + 1], vec![7; k + 1]));
        fs::write(folder.join("notes.txt"), "ignored").unwrap();
    }
    fs::write(dir.path().join(".hidden"), "").unwrap();
    let data = open(&arrays(dir.path()), two_inputs()).unwrap();
    assert_eq!(data.len(), 3);
    assert!(data.warning().is_none());
    let first = data.sample(0).unwrap();
    // "a" sorts first; it was written second (k = 1).
    assert_eq!(first.inputs[0], f32s(&[2, 3], 1.0));
    assert_eq!(first.inputs[1], i64s(&[2], vec![7, 7]));
    assert!(first.files[0].ends_with("a/x.npy"));
    let all: Vec<Sample> = data.iter().collect::<Result<_>>().unwrap();
    assert_eq!(all[2].inputs[0], f32s(&[3, 3], 2.0));
    assert!(data.sample(3).is_err());
}

#[test]
fn npz_samples_are_keyed_by_input_name() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..2 {
        let (x, ids) = (f32s(&[1, 3], k as f32), i64s(&[1], vec![k]));
        write_npz(
            &dir.path().join(format!("s{k}.npz")),
            &[("ids", &ids), ("x", &x)],
        )
        .unwrap();
    }
    let data = open(&arrays(dir.path()), two_inputs()).unwrap();
    assert_eq!(data.len(), 2);
    let s = data.sample(1).unwrap();
    assert_eq!(s.inputs, vec![f32s(&[1, 3], 1.0), i64s(&[1], vec![1])]);
    assert!(s.files[0].to_string_lossy().ends_with("s1.npz/x.npy"));
}

#[test]
fn stacked_arrays_are_cut_along_the_first_axis() {
    let dir = tempfile::tempdir().unwrap();
    // x has the input's rank: batches of one; ids has one more dim: rows.
    save(&dir.path().join("x.npy"), &f32s(&[4, 3], 0.0));
    save(
        &dir.path().join("ids.npy"),
        &i64s(&[4, 1], vec![0, 1, 2, 3]),
    );
    let data = open(&arrays(dir.path()), two_inputs()).unwrap();
    assert_eq!(data.len(), 4);
    let s = data.sample(2).unwrap();
    assert_eq!(s.inputs, vec![f32s(&[1, 3], 6.0), i64s(&[1], vec![2])]);
    assert!(s.files[0].to_string_lossy().ends_with("x.npy[2]"));

    // Sample counts must agree.
    save(&dir.path().join("ids.npy"), &i64s(&[3, 1], vec![0, 1, 2]));
    bad_input(
        open(&arrays(dir.path()), two_inputs()),
        &["input 'x'", "x.npy", "4 samples", "ids.npy has 3"],
    );
    // Every input needs its file.
    fs::remove_file(dir.path().join("ids.npy")).unwrap();
    bad_input(
        open(&arrays(dir.path()), two_inputs()),
        &["input 'ids'", "no ids.npy"],
    );
    // And a rank that fits neither reading is refused.
    save(&dir.path().join("ids.npy"), &i64s(&[4, 1, 1], vec![0; 4]));
    bad_input(
        open(&arrays(dir.path()), two_inputs()),
        &["input 'ids'", "ids.npy", "[4, 1, 1]", "i64[N]"],
    );
}

#[test]
fn every_validation_error_names_the_input_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = |name: &str| {
        let folder = dir.path().join(name);
        save(&folder.join("x.npy"), &f32s(&[2, 3], 0.0));
        save(&folder.join("ids.npy"), &i64s(&[2], vec![1, 2]));
        folder
    };
    let folder = good("0");
    let data = open(&arrays(dir.path()), two_inputs()).unwrap();
    data.sample(0).unwrap();

    // Missing input.
    fs::remove_file(folder.join("ids.npy")).unwrap();
    bad_input(
        data.sample(0),
        &["input 'ids'", "missing", &folder.display().to_string()],
    );
    // Wrong shape (fixed dim).
    save(&folder.join("ids.npy"), &i64s(&[2], vec![1, 2]));
    save(&folder.join("x.npy"), &f32s(&[2, 4], 0.0));
    bad_input(
        data.sample(0),
        &["input 'x'", "0/x.npy", "[2, 4]", "f32[N,3]"],
    );
    // Wrong rank.
    save(&folder.join("x.npy"), &f32s(&[6], 0.0));
    bad_input(
        data.sample(0),
        &["input 'x'", "0/x.npy", "rank 1 instead of 2"],
    );
    // A symbol bound inconsistently between inputs.
    save(&folder.join("x.npy"), &f32s(&[3, 3], 0.0));
    bad_input(
        data.sample(0),
        &["input 'ids'", "0/ids.npy", "N is 2 here but 3 in input 'x'"],
    );
    // Wrong dtype.
    save(
        &folder.join("x.npy"),
        &f32s(&[2, 3], 0.0).cast(DType::F64).unwrap(),
    );
    bad_input(
        data.sample(0),
        &["input 'x'", "0/x.npy", "dtype f64", "f32[N,3]"],
    );
    // NaN and infinity.
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let mut values = vec![0.5f32; 6];
        values[4] = bad;
        let t = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[2, 3]), values).unwrap());
        save(&folder.join("x.npy"), &t);
        bad_input(
            data.sample(0),
            &["input 'x'", "0/x.npy", &format!("{bad}"), "[1, 1]"],
        );
    }
    // An array for no input.
    save(&folder.join("x.npy"), &f32s(&[2, 3], 0.0));
    save(&folder.join("y.npy"), &f32s(&[1], 0.0));
    bad_input(data.sample(0), &["0/y.npy", "no input 'y'", "x, ids"]);
    fs::remove_file(folder.join("y.npy")).unwrap();
    // A broken file.
    fs::write(folder.join("x.npy"), b"\x93NUMPY\x01\x00").unwrap();
    bad_input(data.sample(0), &["0/x.npy", "at byte"]);

    // Nothing to read, or layouts mixed.
    let empty = tempfile::tempdir().unwrap();
    bad_input(
        open(&arrays(empty.path()), two_inputs()),
        &["no sample folders"],
    );
    save(&dir.path().join("stray.npy"), &f32s(&[1], 0.0));
    bad_input(
        open(&arrays(dir.path()), two_inputs()),
        &["mixes sample folders (1)"],
    );
    bad_input(
        open(&arrays(&dir.path().join("nowhere")), two_inputs()),
        &["nowhere", "must be a directory"],
    );
}

#[test]
fn splits_are_deterministic_and_both_parts_non_empty() {
    let dir = tempfile::tempdir().unwrap();
    save(&dir.path().join("x.npy"), &f32s(&[10, 3], 0.0));
    save(&dir.path().join("ids.npy"), &i64s(&[10], (0..10).collect()));
    let sig = Signature {
        inputs: vec![
            sig("x", DType::F32, &[SigDim::Fixed(3)]),
            sig("ids", DType::I64, &[]),
        ],
    };
    let data = open(&arrays(dir.path()), sig).unwrap();
    let ids = |d: &Dataset| -> Vec<i64> {
        d.iter()
            .map(|s| s.unwrap().inputs[1].to_i64_vec().unwrap()[0])
            .collect()
    };
    let (calib, eval) = data.split("0.8".parse().unwrap()).unwrap();
    assert_eq!((ids(&calib), ids(&eval)), ((0..8).collect(), vec![8, 9]));
    let (calib, eval) = data.split("last:30%".parse().unwrap()).unwrap();
    assert_eq!((ids(&calib), ids(&eval)), (vec![7, 8, 9], (0..7).collect()));
    let (calib, eval) = data.split("first:2".parse().unwrap()).unwrap();
    assert_eq!((ids(&calib), ids(&eval)), (vec![0, 1], (2..10).collect()));
    assert_eq!(eval.sample(0).unwrap().index, 2);
    assert!(
        eval.describe().contains("samples 2..10"),
        "{}",
        eval.describe()
    );
    // A split of a split stays within it.
    let (a, b) = eval.split("last:1".parse().unwrap()).unwrap();
    assert_eq!((ids(&a), ids(&b)), (vec![9], (2..9).collect()));

    bad_input(data.split("10".parse().unwrap()), &["0 for evaluation"]);
    bad_input(data.split("0.05".parse().unwrap()), &["0 for calibration"]);
    for bad in ["1.5", "0%", "middle:3", "x", "first:"] {
        bad_input(bad.parse::<Split>(), &[bad]);
    }
}

fn token_sig(seq: SigDim) -> Signature {
    Signature {
        inputs: vec![
            sig("input_ids", DType::I64, &[SigDim::Fixed(1), seq.clone()]),
            sig(
                "attention_mask",
                DType::I64,
                &[SigDim::Fixed(1), seq.clone()],
            ),
            sig("token_type_ids", DType::I32, &[SigDim::Fixed(1), seq]),
        ],
    }
}

#[test]
fn token_files_give_ids_mask_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.txt");
    fs::write(&path, "# comment\n101 7 8 102\n\n101 1 2 3 4 5 6 102\n").unwrap();
    let spec = |length| DataSpec::Tokens {
        path: path.clone(),
        options: TokenOptions {
            length,
            ..TokenOptions::default()
        },
    };
    let data = open(&spec(Some(6)), token_sig(SigDim::Symbol("seq".into()))).unwrap();
    assert_eq!(data.len(), 2);
    let s = data.sample(0).unwrap();
    assert_eq!(s.inputs[0], i64s(&[1, 6], vec![101, 7, 8, 102, 0, 0]));
    assert_eq!(s.inputs[1], i64s(&[1, 6], vec![1, 1, 1, 1, 0, 0]));
    assert_eq!(
        s.inputs[2],
        i64s(&[1, 6], vec![0; 6]).cast(DType::I32).unwrap()
    );
    assert!(s.files[0].to_string_lossy().ends_with("tokens.txt:2"));
    // Truncated to the length.
    let s = data.sample(1).unwrap();
    assert_eq!(s.inputs[0], i64s(&[1, 6], vec![101, 1, 2, 3, 4, 5]));
    assert_eq!(s.inputs[1], i64s(&[1, 6], vec![1; 6]));
    // Without a length, each sequence keeps its own.
    let data = open(&spec(None), token_sig(SigDim::Symbol("seq".into()))).unwrap();
    assert_eq!(data.sample(1).unwrap().inputs[0].shape(), &[1, 8]);
    // A fixed sequence dim is the default length.
    let data = open(&spec(None), token_sig(SigDim::Fixed(5))).unwrap();
    assert_eq!(data.sample(0).unwrap().inputs[0].shape(), &[1, 5]);

    // The same from an .npy of ids.
    let npy = dir.path().join("ids.npy");
    save(&npy, &i64s(&[2, 3], vec![1, 2, 3, 4, 5, 6]));
    let data = open(
        &DataSpec::Tokens {
            path: npy.clone(),
            options: TokenOptions::default(),
        },
        token_sig(SigDim::Symbol("seq".into())),
    )
    .unwrap();
    assert_eq!(
        data.sample(1).unwrap().inputs[0],
        i64s(&[1, 3], vec![4, 5, 6])
    );
}

#[test]
fn token_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.txt");
    fs::write(&path, "1 2 3\n4 five 6\n7 -8\n").unwrap();
    let spec = DataSpec::Tokens {
        path: path.clone(),
        options: TokenOptions::default(),
    };
    let data = open(&spec, token_sig(SigDim::Symbol("seq".into()))).unwrap();
    bad_input(
        data.sample(1),
        &["tokens.txt", "at byte 8", "line 2", "'five'"],
    );
    bad_input(data.sample(2), &["tokens.txt:3", "-8 is negative"]);
    // A model input tokens cannot fill.
    let mut signature = token_sig(SigDim::Symbol("seq".into()));
    signature.inputs.push(sig("pixel_values", DType::F32, &[]));
    bad_input(open(&spec, signature), &["input 'pixel_values'"]);
    // No ids input at all.
    let signature = Signature {
        inputs: vec![sig("attention_mask", DType::I64, &[n()])],
    };
    bad_input(open(&spec, signature), &["no input 'input_ids'"]);
    // Float token arrays are refused.
    let npy = dir.path().join("ids.npy");
    save(&npy, &f32s(&[2, 3], 0.0));
    let spec = DataSpec::Tokens {
        path: npy,
        options: TokenOptions::default(),
    };
    bad_input(
        open(&spec, token_sig(SigDim::Symbol("seq".into()))),
        &["ids.npy", "int64 or int32"],
    );
}

#[test]
fn random_data_warns_and_is_reproducible() {
    let options = RandomOptions {
        samples: 3,
        seed: 7,
        symbols: [("N".to_string(), 2)].into(),
        ..RandomOptions::default()
    };
    let data = open(&DataSpec::Random(options.clone()), two_inputs()).unwrap();
    let warning = data.warning().unwrap();
    assert!(warning.contains("random data"), "{warning}");
    let a = data.sample(1).unwrap();
    assert_eq!(a.inputs[0].shape(), &[2, 3]);
    assert_eq!(a.inputs[1].dtype(), DType::I64);
    assert_eq!(a.inputs, data.sample(1).unwrap().inputs);
    assert_ne!(a.inputs[0], data.sample(0).unwrap().inputs[0]);
    let values = a.inputs[0].to_f64_vec();
    assert!(
        values.iter().all(|v| (-1.0..=1.0).contains(v)),
        "{values:?}"
    );
    let again = open(&DataSpec::Random(options), two_inputs()).unwrap();
    assert_eq!(
        again.sample(2).unwrap().inputs,
        data.sample(2).unwrap().inputs
    );
}

fn image(width: usize, height: usize) -> Image8 {
    let data = (0..width * height * 3)
        .map(|i| ((i * 37) % 256) as u8)
        .collect();
    Image8 {
        width,
        height,
        channels: 3,
        data,
    }
}

#[test]
fn preprocessing_crops_reorders_and_normalizes() {
    let spec = Preprocess::from_toml_str(
        "crop = \"2x3\"\nchannels = \"bgr\"\nscale = \"1/255\"\nmean = [0.5, 0.25, 0.125]\nstd = [2, 4, 8]\nlayout = \"nchw\"\ndtype = \"f32\"\n",
        Path::new("spec.toml"),
    )
    .unwrap();
    let img = image(5, 4);
    let t = spec.apply(&img, Path::new("a.png")).unwrap();
    assert_eq!(t.shape(), &[3, 2, 3]);
    let Tensor::F32(a) = &t else { panic!() };
    // Crop rows 1..3, columns 1..4; output channel 0 is blue (source channel 2).
    for (c, y, x) in [(0, 0, 0), (1, 1, 2), (2, 1, 1)] {
        let source = img.data[((y + 1) * 5 + x + 1) * 3 + (2 - c)];
        let expected = (f32::from(source) * (1.0f64 / 255.0) as f32 - [0.5, 0.25, 0.125][c])
            / [2.0, 4.0, 8.0][c];
        assert_eq!(a[[c, y, x]], expected, "{c} {y} {x}");
    }
    // nhwc holds the same numbers transposed.
    let mut nhwc = spec.clone();
    nhwc.set("layout", "nhwc").unwrap();
    let Tensor::F32(b) = nhwc.apply(&img, Path::new("a.png")).unwrap() else {
        panic!()
    };
    assert_eq!(b.shape(), &[2, 3, 3]);
    assert_eq!(b.clone().permuted_axes(IxDyn(&[2, 0, 1])), *a);

    // Short-side resizing keeps the aspect ratio, rounding half to even.
    let mut resized = Preprocess::default();
    resized.set("resize", "2").unwrap();
    resized.set("filter", "nearest").unwrap();
    // 5x4 -> short side 4 becomes 2, long side 2.5 rounds to 2.
    let t = resized.apply(&img, Path::new("a.png")).unwrap();
    assert_eq!(t.shape(), &[3, 2, 2]);
    resized.set("resize", "3x7").unwrap();
    assert_eq!(
        resized.apply(&img, Path::new("a.png")).unwrap().shape(),
        &[3, 3, 7]
    );
    // Crops larger than the image are errors naming the file.
    resized.set("crop", "4").unwrap();
    bad_input(
        resized.apply(&img, Path::new("a.png")),
        &["a.png", "crop 4x4", "3x7"],
    );
}

#[test]
fn preprocess_specs_are_checked() {
    let origin = Path::new("p.toml");
    for (text, needle) in [
        ("resize = 0", "resize=0"),
        ("resize = \"2x\"", "HEIGHTxWIDTH"),
        ("filter = \"cubic\"", "lanczos, bilinear or nearest"),
        ("channels = \"rgba\"", "rgb, bgr or gray"),
        ("scale = \"1/0\"", "fraction"),
        ("mean = [1, 2]", "mean has 2 values"),
        ("std = [1, 0, 1]", "std must not be 0"),
        ("layout = \"chw\"", "nchw or nhwc"),
        ("dtype = \"f16\"", "f32"),
        ("colour = 1", "unknown preprocess key 'colour'"),
        ("mean = [\"a\"]", "list of numbers"),
        ("resize = {a = 1}", "cannot be a table"),
        ("resize = ", "p.toml"),
    ] {
        let text = bad_input(Preprocess::from_toml_str(text, origin), &[needle]);
        assert!(text.starts_with("p.toml: preprocess spec:"), "{text}");
    }
    let mut p = Preprocess::default();
    p.set("mean", "0.485,0.456,0.406").unwrap();
    p.set("scale", "0.5").unwrap();
    assert_eq!(p.mean, vec![0.485, 0.456, 0.406]);
    assert_eq!(p.scale, 0.5);
    p.set("channels", "gray").unwrap();
    bad_input(p.check(), &["mean has 3 values", "1 channel(s)"]);
}

#[test]
fn image_folders_decode_png_and_refuse_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let write_png = |name: &str, color: png::ColorType, pixels: &[u8], w: u32, h: u32| {
        let file = fs::File::create(dir.path().join(name)).unwrap();
        let mut encoder = png::Encoder::new(file, w, h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(pixels).unwrap();
    };
    // 2x1 RGBA (alpha dropped) and 2x1 grey (replicated).
    write_png(
        "b.png",
        png::ColorType::Rgba,
        &[10, 20, 30, 0, 40, 50, 60, 255],
        2,
        1,
    );
    write_png("a.png", png::ColorType::Grayscale, &[100, 200], 2, 1);
    fs::write(dir.path().join("readme.md"), "not an image").unwrap();
    let signature = Signature {
        inputs: vec![sig(
            "pixels",
            DType::F32,
            &[n(), SigDim::Fixed(3), SigDim::Fixed(1), SigDim::Fixed(2)],
        )],
    };
    let spec = |preprocess: Preprocess| DataSpec::Images {
        dir: dir.path().to_path_buf(),
        preprocess,
        input: None,
    };
    let raw = Preprocess {
        scale: 1.0,
        ..Preprocess::default()
    };
    let data = open(&spec(raw.clone()), signature.clone()).unwrap();
    assert_eq!(data.len(), 2);
    let grey = data.sample(0).unwrap();
    assert!(grey.files[0].ends_with("a.png"));
    assert_eq!(grey.inputs[0].shape(), &[1, 3, 1, 2]);
    assert_eq!(
        grey.inputs[0].to_f64_vec(),
        vec![100.0, 200.0, 100.0, 200.0, 100.0, 200.0]
    );
    let rgba = data.sample(1).unwrap();
    assert_eq!(
        rgba.inputs[0].to_f64_vec(),
        vec![10.0, 40.0, 20.0, 50.0, 30.0, 60.0]
    );
    // Gray output uses Pillow's luma weights.
    let mut gray = raw.clone();
    gray.set("channels", "gray").unwrap();
    let gsig = Signature {
        inputs: vec![sig(
            "pixels",
            DType::F32,
            &[SigDim::Fixed(1), SigDim::Fixed(1), SigDim::Fixed(2)],
        )],
    };
    let data = open(&spec(gray), gsig).unwrap();
    let luma =
        |r: u32, g: u32, b: u32| f64::from((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
    assert_eq!(
        data.sample(1).unwrap().inputs[0].to_f64_vec(),
        vec![luma(10, 20, 30), luma(40, 50, 60)]
    );

    // A size the model does not take names the image.
    let mut bigger = raw.clone();
    bigger.set("resize", "2x4").unwrap();
    let data = open(&spec(bigger), signature.clone()).unwrap();
    bad_input(data.sample(0), &["input 'pixels'", "a.png", "[1, 3, 2, 4]"]);
    // Broken and truncated files.
    fs::write(dir.path().join("c.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    fs::write(dir.path().join("d.jpg"), [0xff, 0xd8, 0xff, 0xe0, 0, 16]).unwrap();
    fs::write(dir.path().join("e.jpeg"), b"GIF89a").unwrap();
    let data = open(&spec(raw.clone()), signature.clone()).unwrap();
    bad_input(data.sample(2), &["c.png", "bad PNG"]);
    bad_input(data.sample(3), &["d.jpg", "bad JPEG"]);
    bad_input(data.sample(4), &["e.jpeg", "not a PNG or JPEG"]);
    // Images feed one float input.
    let mut two = signature.clone();
    two.inputs.push(sig("mask", DType::F32, &[]));
    bad_input(
        open(&spec(raw.clone()), two.clone()),
        &["name it", "pixels, mask"],
    );
    let named = DataSpec::Images {
        dir: dir.path().to_path_buf(),
        preprocess: raw.clone(),
        input: Some("pixels".into()),
    };
    bad_input(open(&named, two), &["also needs input 'mask'"]);
    let ints = Signature {
        inputs: vec![sig("pixels", DType::U8, &[])],
    };
    bad_input(open(&spec(raw), ints), &["f32", "u8"]);
}
