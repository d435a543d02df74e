//! `edgeconv convert`: import, pass pipeline, target legalization, support
//! check, emit. What it prints is documented in docs/CLI.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgeconv::formats::onnx::export::{ExternalData, OnnxTarget};
use edgeconv::formats::target::{EmitReport, Target};
use edgeconv::ir::error::Error;
use edgeconv::passes::manager::PipelineReport;
use edgeconv::passes::pin_shapes::{Pin, PinShapes};
use edgeconv::passes::{Repeat, RunOptions, Stage, presets, run_stages};
use edgeconv::progress::Progress;
use serde::Serialize;

use super::load;

/// The formats `--target` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetName {
    Onnx,
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
}

/// The `--json` object.
#[derive(Serialize)]
struct JsonReport<'a> {
    model: String,
    target: &'static str,
    files: Vec<String>,
    bytes: u64,
    notes: &'a [String],
    nodes_before: usize,
    nodes_after: usize,
    passes: Vec<&'a str>,
    timing_ms: Timing,
    pass_timing_ms: Vec<PassTiming>,
    rewrites: Option<Vec<JsonRewrite<'a>>>,
    printed: Vec<JsonPrinted<'a>>,
    /// What passes reported (pruning: parameters and sparsity per layer).
    notes_by_pass: Vec<JsonNote<'a>>,
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
    let target: Box<dyn Target> = match req.target {
        TargetName::Onnx => Box::new(OnnxTarget {
            external_data: if req.external_data {
                ExternalData::Always
            } else {
                ExternalData::WhenTooLarge
            },
        }),
    };
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
    let emitted = target
        .emit(&g, &req.output, progress)
        .map_err(|e| e.in_file(&req.model))?;
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
        };
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
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
    Ok((stdout, stderr))
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
