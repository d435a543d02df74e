//! `edgeconv convert`: import, pass pipeline, target legalization, support
//! check, emit. What it prints is documented in docs/CLI.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgeconv::formats::coverage::CoverageReport;
use edgeconv::formats::gguf::imatrix::Imatrix;
use edgeconv::formats::gguf::mix::{FileType, TypeOverride};
use edgeconv::formats::gguf::target::GgufTarget;
use edgeconv::formats::onnx::export::{ExternalData, OnnxTarget};
use edgeconv::formats::target::{EmitReport, Target, require_supported};
use edgeconv::formats::tflite::lower::{IoLayout, LowerOptions};
use edgeconv::formats::tflite::quantize::NodeFilter;
use edgeconv::formats::tflite::quantize::accuracy::{AccuracyReport, Evaluation};
use edgeconv::formats::tflite::target::{Quantization, TfliteTarget};
use edgeconv::formats::tflite::write::OffsetBuffers;
use edgeconv::ir::error::Error;
use edgeconv::passes::manager::PipelineReport;
use edgeconv::passes::pin_shapes::{Pin, PinShapes};
use edgeconv::passes::{Repeat, RunOptions, Stage, presets, run_stages};
use edgeconv::progress::Progress;
use serde::Serialize;

use super::load;
use super::quantize::{self as quant, QuantFlags, ReportInput};

/// The formats `--target` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetName {
    Onnx,
    Tflite,
    Gguf,
}

/// `--io-layout`: how a model's own inputs and outputs are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IoLayoutArg {
    /// As in the source model (NCHW for ONNX).
    #[default]
    Source,
    /// Channels-last, with no transposes at the model boundary.
    Nhwc,
}

/// `--quant`: how weights and activations are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantArg {
    /// float16 weights behind DEQUANTIZE ops, float32 compute.
    Fp16,
    /// Full integer: int8 weights and activations from calibration data (--calib).
    Int8,
    /// Dynamic range: int8 weights, float activations (no calibration).
    Dynamic,
}

/// Everything `convert` was asked to do.
pub struct ConvertRequest {
    pub model: PathBuf,
    pub target: TargetName,
    pub output: PathBuf,
    /// Replaces the target's default pass list.
    pub passes: Option<Vec<String>>,
    pub pins: Vec<Pin>,
    pub explain: bool,
    pub print_after: Option<String>,
    pub json: bool,
    pub verbose: bool,
    pub external_data: bool,
    pub io_layout: IoLayoutArg,
    /// `--quant` as given; its meaning depends on the target.
    pub quant: Option<String>,
    /// GGUF `--tensor-type GLOB=TYPE`.
    pub tensor_types: Vec<String>,
    /// GGUF `--imatrix`.
    pub imatrix: Option<PathBuf>,
    pub quant_flags: QuantFlags,
}

impl ConvertRequest {
    /// `--quant` for the TFLite target.
    fn tflite_quant(&self) -> anyhow::Result<Option<QuantArg>> {
        use clap::ValueEnum;
        self.quant
            .as_deref()
            .map(|q| {
                QuantArg::from_str(q, true).map_err(|_| {
                    Error::Input(format!(
                        "--quant {q}: the tflite target takes fp16, int8 or dynamic"
                    ))
                    .into()
                })
            })
            .transpose()
    }
}

/// A conversion refused because the target cannot express some nodes
/// (exit 3): the error lists them, `coverage` is the whole report.
#[derive(Debug)]
pub struct Refused {
    pub coverage: CoverageReport,
    pub error: Error,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The `--json` object.
#[derive(Serialize)]
struct JsonReport<'a> {
    model: String,
    target: &'static str,
    files: Vec<String>,
    bytes: u64,
    notes: &'a [String],
    coverage: &'a CoverageReport,
    nodes_before: usize,
    nodes_after: usize,
    passes: Vec<&'a str>,
    timing_ms: Timing,
    pass_timing_ms: Vec<PassTiming>,
    rewrites: Option<Vec<JsonRewrite<'a>>>,
    printed: Vec<JsonPrinted<'a>>,
    /// What passes reported (pruning: parameters and sparsity per layer).
    notes_by_pass: Vec<JsonNote<'a>>,
    /// `--quant int8`: the accuracy report (also written beside the artifact).
    accuracy: Option<&'a AccuracyReport>,
}

#[derive(Serialize)]
struct JsonNote<'a> {
    pass: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
struct Timing {
    import: f64,
    passes: f64,
    emit: f64,
    total: f64,
}

#[derive(Serialize)]
struct PassTiming {
    pass: &'static str,
    runs: usize,
    changed: usize,
    ms: f64,
}

#[derive(Serialize)]
struct JsonRewrite<'a> {
    rule: &'a str,
    matched: &'a [String],
    produced: &'a [String],
}

#[derive(Serialize)]
struct JsonPrinted<'a> {
    pass: &'a str,
    ir: &'a str,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Runs the conversion; returns what goes to stdout and what goes to stderr.
pub fn convert(req: &ConvertRequest, progress: &dyn Progress) -> anyhow::Result<(String, String)> {
    let start = Instant::now();
    let quant = match req.target {
        TargetName::Tflite => req.tflite_quant()?,
        _ => None,
    };
    check_quant_flags(req, quant)?;
    check_gguf_flags(req)?;
    let mut target: Box<dyn Target> = match req.target {
        TargetName::Onnx => Box::new(OnnxTarget {
            external_data: if req.external_data {
                ExternalData::Always
            } else {
                ExternalData::WhenTooLarge
            },
        }),
        TargetName::Tflite => Box::new(tflite_target(req, quant, None)?),
        TargetName::Gguf => Box::new(gguf_target(req)?),
    };
    if req.target == TargetName::Onnx && req.quant.is_some() {
        return Err(Error::Input(
            "--quant applies to the tflite and gguf targets; the onnx target writes the model's own types"
                .into(),
        )
        .into());
    }
    let mut stages = Vec::new();
    if !req.pins.is_empty() {
        stages.push(Stage {
            name: "pin",
            passes: vec![Box::new(PinShapes::new(req.pins.clone()))],
            repeat: Repeat::Once,
        });
    }
    match &req.passes {
        Some(list) => {
            let names: Vec<&str> = list
                .iter()
                .map(String::as_str)
                .filter(|p| !p.is_empty())
                .collect();
            if !names.is_empty() {
                stages.push(presets::stage("optimize", &names)?);
            }
        }
        None => stages.extend(presets::for_target(target.name())),
    }
    stages.extend(target.legalize());
    let mut pass_names: Vec<&'static str> = Vec::new();
    for name in stages
        .iter()
        .flat_map(|s| s.passes.iter().map(|p| p.name()))
    {
        if !pass_names.contains(&name) {
            pass_names.push(name);
        }
    }
    if let Some(pass) = &req.print_after {
        let known: Vec<&str> = stages
            .iter()
            .flat_map(|s| s.passes.iter().map(|p| p.name()))
            .collect();
        if !known.contains(&pass.as_str()) {
            return Err(Error::Input(format!(
                "--print-after {pass}: no such pass in this pipeline; it runs: {}",
                known.join(", ")
            ))
            .into());
        }
    }

    let mut g = load::import(&req.model, progress)?;
    let imported = start.elapsed();
    let nodes_before = g.node_count();
    let options = RunOptions {
        verify_each: false,
        print_after: req.print_after.clone(),
    };
    let report = run_stages(&mut g, &stages, &options).map_err(|e| e.in_file(&req.model))?;
    let optimized = start.elapsed();
    target
        .require_graph(&g)
        .map_err(|e| e.in_file(&req.model))?;
    let model_name = req.model.display().to_string();
    let precheck = CoverageReport::of(target.as_ref(), &g, &model_name, &BTreeMap::new())
        .map_err(|e| e.in_file(&req.model))?;
    if !precheck.unsupported.is_empty() {
        let refused = require_supported(target.as_ref(), &g)
            .err()
            .unwrap_or_else(|| Error::Graph("coverage and support disagree".into()));
        return Err(Refused {
            coverage: precheck,
            error: refused.in_file(&req.model),
        }
        .into());
    }
    let mut accuracy = None;
    let mut accuracy_target: Option<TfliteTarget> = None;
    if quant == Some(QuantArg::Int8) {
        let data = quant::open_data(&req.quant_flags, &g, true)?;
        for w in &data.warnings {
            eprintln!("warning: {w}");
        }
        let calib = data.calib.as_ref().expect("int8 requires --calib");
        let calibration = quant::run_calibration(&req.quant_flags, &g, calib, progress)
            .map_err(|e| e.context(format!("calibrating {}", req.model.display())))?;
        let mut tflite = tflite_target(req, quant, Some(calibration.clone()))?;
        let eval = data.eval.as_ref().unwrap_or(calib);
        let (evaluation, budget) = if data.skip_eval {
            (Evaluation::default(), None)
        } else {
            quant::evaluate_int8(&req.quant_flags, &mut tflite, &g, eval, progress)?
        };
        accuracy = Some((calibration, data, evaluation, budget));
        target = Box::new(tflite.clone());
        accuracy_target = Some(tflite);
    }
    let mut emitted = target
        .emit(&g, &req.output, progress)
        .map_err(|e| e.in_file(&req.model))?;
    for warning in &emitted.warnings {
        eprintln!("warning: {warning}");
    }
    let mut accuracy_report = None;
    if let (Some((calibration, data, evaluation, budget)), Some(tflite)) =
        (accuracy, accuracy_target.as_ref())
    {
        let (written_report, files) = quant::write_report(ReportInput {
            model: &req.model,
            artifact: &req.output,
            flags: &req.quant_flags,
            target: tflite,
            g: &g,
            calibration: Some(&calibration),
            calib_data: data.calib.as_ref(),
            eval_description: &data.eval_description,
            evaluation,
            budget,
        })?;
        for file in files {
            emitted.bytes += std::fs::metadata(&file).map_or(0, |m| m.len());
            emitted.files.push(file);
        }
        let worst = written_report
            .outputs
            .iter()
            .map(|o| o.sqnr_db.unwrap_or(f64::INFINITY))
            .fold(f64::INFINITY, f64::min);
        emitted.notes.push(if written_report.outputs.is_empty() {
            "accuracy not measured (--eval none)".to_string()
        } else if worst.is_finite() {
            format!("simulated output SQNR {worst:.1} dB")
        } else {
            "simulated outputs exact".to_string()
        });
        accuracy_report = Some(written_report);
    }
    let coverage = CoverageReport::of(target.as_ref(), &g, &model_name, &emitted.lowered)
        .map_err(|e| e.in_file(&req.model))?;
    for file in coverage.write_beside(&req.output)? {
        emitted.bytes += std::fs::metadata(&file).map_or(0, |m| m.len());
        emitted.files.push(file);
    }
    let total = start.elapsed();

    let timing = Timing {
        import: ms(imported),
        passes: ms(optimized - imported),
        emit: ms(total - optimized),
        total: ms(total),
    };
    let pass_timing = pass_timing(&report);
    if req.json {
        let json = JsonReport {
            model: req.model.display().to_string(),
            target: target.name(),
            files: emitted
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            bytes: emitted.bytes,
            notes: &emitted.notes,
            coverage: &coverage,
            nodes_before,
            nodes_after: g.node_count(),
            passes: pass_names,
            timing_ms: timing,
            pass_timing_ms: pass_timing,
            rewrites: req.explain.then(|| {
                report
                    .rewrites
                    .iter()
                    .map(|r| JsonRewrite {
                        rule: &r.rule,
                        matched: &r.matched,
                        produced: &r.produced,
                    })
                    .collect()
            }),
            printed: report
                .printed
                .iter()
                .map(|(pass, ir)| JsonPrinted { pass, ir })
                .collect(),
            notes_by_pass: report
                .notes
                .iter()
                .map(|(pass, text)| JsonNote { pass, text })
                .collect(),
            accuracy: accuracy_report.as_ref(),
        };
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        budget_check(accuracy_report.as_ref())?;
        return Ok((text, String::new()));
    }

    let mut stdout = String::new();
    for (pass, ir) in &report.printed {
        writeln!(stdout, "# IR after {pass}")?;
        stdout.push_str(ir);
    }
    if req.explain {
        stdout.push_str(&report.explain());
    }
    let mut stderr = summary(req, &emitted, nodes_before, g.node_count(), &timing);
    for (pass, note) in &report.notes {
        writeln!(stderr, "{pass}:\n{note}")?;
    }
    if req.verbose {
        stderr.push_str(&timing_table(&pass_timing));
    }
    if let Some(r) = &accuracy_report {
        stderr.push_str(&accuracy_summary(r));
    }
    if let Err(e) = budget_check(accuracy_report.as_ref()) {
        eprint!("{stderr}");
        return Err(e);
    }
    Ok((stdout, stderr))
}

/// The TFLite target as the request asks for it; `calibration` for `--quant int8`.
fn tflite_target(
    req: &ConvertRequest,
    quant: Option<QuantArg>,
    calibration: Option<edgeconv::calibration::calibrate::Calibration>,
) -> anyhow::Result<TfliteTarget> {
    Ok(TfliteTarget {
        lower: LowerOptions {
            io_layout: match req.io_layout {
                IoLayoutArg::Source => IoLayout::Source,
                IoLayoutArg::Nhwc => IoLayout::ChannelsLast,
            },
            fp16_weights: quant == Some(QuantArg::Fp16),
        },
        offset_buffers: OffsetBuffers::Auto,
        provenance: Some(provenance(req)?),
        quant: match quant {
            Some(QuantArg::Int8) => Quantization::Int8 {
                calibration,
                options: req.quant_flags.int8_options(),
            },
            Some(QuantArg::Dynamic) => Quantization::Dynamic {
                keep_float: NodeFilter {
                    patterns: req.quant_flags.keep_float.clone(),
                },
            },
            _ => Quantization::None,
        },
    })
}

/// Quantization flags must fit `--quant`: a typo'd mode must not silently
/// produce a float model.
fn check_quant_flags(req: &ConvertRequest, quant: Option<QuantArg>) -> anyhow::Result<()> {
    let used = req.quant_flags.used();
    let allowed: &[&str] = match quant {
        Some(QuantArg::Int8) => return Ok(()),
        Some(QuantArg::Dynamic) => &["--keep-float"],
        _ => &[],
    };
    let stray: Vec<&str> = used.into_iter().filter(|f| !allowed.contains(f)).collect();
    if stray.is_empty() {
        return Ok(());
    }
    let mode = quant.map_or("no --quant".to_string(), |q| {
        format!("--quant {}", format!("{q:?}").to_lowercase())
    });
    Err(Error::Input(format!(
        "{} {} only with --quant int8{}; this run has {mode}",
        stray.join(", "),
        if stray.len() == 1 { "applies" } else { "apply" },
        if stray == ["--keep-float"] {
            " or dynamic"
        } else {
            ""
        },
    ))
    .into())
}

/// The GGUF target as the request asks for it.
fn gguf_target(req: &ConvertRequest) -> anyhow::Result<GgufTarget> {
    let ftype = req
        .quant
        .as_deref()
        .map(|q| {
            FileType::parse(q).ok_or_else(|| {
                Error::Input(format!(
                    "--quant {q}: the gguf target takes a llama.cpp file type: {}",
                    FileType::names()
                ))
            })
        })
        .transpose()?;
    let overrides = req
        .tensor_types
        .iter()
        .map(|spec| TypeOverride::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let imatrix = req.imatrix.as_deref().map(Imatrix::read).transpose()?;
    if (!overrides.is_empty() || imatrix.is_some()) && ftype.is_none() {
        return Err(Error::Input(
            "--tensor-type and --imatrix need a --quant file type (e.g. --quant Q4_K_M)".into(),
        )
        .into());
    }
    Ok(GgufTarget {
        ftype,
        overrides,
        imatrix,
    })
}

/// `--tensor-type` and `--imatrix` mean something only for GGUF.
fn check_gguf_flags(req: &ConvertRequest) -> anyhow::Result<()> {
    if req.target != TargetName::Gguf && (!req.tensor_types.is_empty() || req.imatrix.is_some()) {
        return Err(
            Error::Input("--tensor-type and --imatrix apply to --target gguf".into()).into(),
        );
    }
    Ok(())
}

/// `--min-sqnr` not met: exit 1 (the artifact and report are written).
fn budget_check(report: Option<&AccuracyReport>) -> anyhow::Result<()> {
    match report.and_then(|r| r.budget.as_ref()) {
        Some(b) if !b.met => Err(Error::CheckFailed(format!(
            "--min-sqnr {} dB: not met even with every int8 node that could be kept in float",
            b.min_sqnr_db
        ))
        .into()),
        _ => Ok(()),
    }
}

fn accuracy_summary(r: &AccuracyReport) -> String {
    if r.outputs.is_empty() {
        return format!(
            "int8: {} nodes integer, {} float; accuracy not measured (--eval none)\n",
            r.int8_nodes,
            r.float_nodes.len()
        );
    }
    let mut out = format!("int8 accuracy on {} (simulated):\n", r.evaluation_data);
    for o in &r.outputs {
        out.push_str(&format!(
            "  {}: SQNR {} dB, cosine {:.5}{}\n",
            o.name,
            o.sqnr_db.map_or("inf".into(), |d| format!("{d:.2}")),
            o.cosine,
            o.top1_agreement.map_or(String::new(), |a| format!(
                ", top-1 agreement {:.1}%",
                a * 100.0
            ))
        ));
    }
    if let Some(worst) = r.layers.iter().filter(|l| l.int8).min_by(|a, b| {
        a.sqnr_db
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.sqnr_db.unwrap_or(f64::INFINITY))
    }) {
        out.push_str(&format!(
            "  lowest layer: {} ({}) {} dB; {} float nodes; per layer in {}\n",
            worst.node,
            worst.op,
            worst.sqnr_db.map_or("inf".into(), |d| format!("{d:.2}")),
            r.float_nodes.len(),
            std::path::Path::new(&r.artifact)
                .with_extension("accuracy.md")
                .display()
        ));
    }
    if let Some(b) = &r.budget {
        out.push_str(&format!(
            "  --min-sqnr {}: {}; kept float: {}\n",
            b.min_sqnr_db,
            if b.met { "met" } else { "NOT met" },
            if b.kept_float.is_empty() {
                "none".to_string()
            } else {
                b.kept_float.join(", ")
            }
        ));
    }
    out
}

/// What the artifact records about how it was made: the source file's
/// SHA-256, the edgeconv version and the options that shape the output.
fn provenance(req: &ConvertRequest) -> anyhow::Result<String> {
    let source_sha256 = if req.model.is_file() {
        Some(sha256_file(&req.model)?)
    } else {
        None
    };
    let json = serde_json::json!({
        "generator": "edgeconv",
        "version": env!("CARGO_PKG_VERSION"),
        "source": req.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "source_sha256": source_sha256,
        "target": format!("{:?}", req.target).to_lowercase(),
        "passes": req.passes,
        "pins": req.pins.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "io_layout": format!("{:?}", req.io_layout).to_lowercase(),
        "quant": req.quant,
        "calibration_method": req.quant_flags.method,
        "input_type": req.quant_flags.input_type.name(),
        "output_type": req.quant_flags.output_type.name(),
        "keep_float": req.quant_flags.keep_float,
        "min_sqnr": req.quant_flags.min_sqnr,
    });
    Ok(json.to_string())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn pass_timing(report: &PipelineReport) -> Vec<PassTiming> {
    report
        .timing()
        .into_iter()
        .map(|(pass, elapsed)| {
            let runs = report.runs.iter().filter(|r| r.pass == pass);
            PassTiming {
                pass,
                runs: runs.clone().count(),
                changed: runs.filter(|r| r.changed).count(),
                ms: ms(elapsed),
            }
        })
        .collect()
}

fn summary(
    req: &ConvertRequest,
    emitted: &EmitReport,
    before: usize,
    after: usize,
    timing: &Timing,
) -> String {
    let files: Vec<String> = emitted
        .files
        .iter()
        .map(|f| display_name(f, &req.output))
        .collect();
    format!(
        "wrote {} ({} bytes; {}): {before} -> {after} nodes in {:.0} ms (import {:.0}, passes {:.0}, emit {:.0})\n",
        files.join(" + "),
        emitted.bytes,
        emitted.notes.join(", "),
        timing.total,
        timing.import,
        timing.passes,
        timing.emit,
    )
}

fn display_name(file: &Path, output: &Path) -> String {
    if file == output {
        output.display().to_string()
    } else {
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into(),
        )
    }
}

fn timing_table(rows: &[PassTiming]) -> String {
    let mut out = String::from("pass              runs  changed        ms\n");
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:>5} {:>8} {:>9.3}\n",
            r.pass, r.runs, r.changed, r.ms
        ));
    }
    out
}
