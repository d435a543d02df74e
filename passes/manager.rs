//! Runs passes in stages: each stage once, or repeatedly until nothing changes
//! (with a cap that names the passes still changing when it is hit). Verifies
//! the graph after every pass when asked (always in tests and debug builds),
//! times every pass, records every rewrite for `--explain`, and prints the IR
//! after a chosen pass.

use std::time::{Duration, Instant};

use crate::ir::Graph;
use crate::ir::error::{Error, Result};
use crate::ir::patch::Rewrite;
use crate::ir::text::{PrintOptions, print};
use crate::ir::verify::verify;

/// Whether a pass changed the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl Changed {
    pub fn from_bool(changed: bool) -> Changed {
        if changed { Changed::Yes } else { Changed::No }
    }
}

/// What a pass may use and report besides the graph.
#[derive(Default)]
pub struct PassCx {
    rewrites: Vec<Rewrite>,
    notes: Vec<String>,
}

impl PassCx {
    /// Records an applied rewrite (passes call this with what `Patch::apply` returns).
    pub fn record(&mut self, rewrite: Rewrite) {
        self.rewrites.push(rewrite);
    }

    /// Reports a figure the user should see (achieved sparsity, parameters removed).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

/// A graph transformation.
pub trait Pass: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed>;
}

/// How often a stage runs its passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    Once,
    /// Until a whole round changes nothing, at most `cap` rounds.
    Fixpoint {
        cap: usize,
    },
}

/// A named group of passes.
pub struct Stage {
    pub name: &'static str,
    pub passes: Vec<Box<dyn Pass>>,
    pub repeat: Repeat,
}

/// Options of one pipeline run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Verify the graph after every pass (on in tests and debug builds regardless).
    pub verify_each: bool,
    /// Print the IR after every run of this pass.
    pub print_after: Option<String>,
}

/// Time and effect of one pass run.
#[derive(Clone, Debug)]
pub struct PassRun {
    pub stage: &'static str,
    pub pass: &'static str,
    pub elapsed: Duration,
    pub changed: bool,
}

/// Everything a pipeline run reports.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    pub runs: Vec<PassRun>,
    pub rewrites: Vec<Rewrite>,
    /// `(pass name, IR text)` for every `print_after` match.
    pub printed: Vec<(String, String)>,
    /// `(pass name, text)` for every note a pass made.
    pub notes: Vec<(&'static str, String)>,
}

impl PipelineReport {
    /// Total time per pass, in first-run order.
    pub fn timing(&self) -> Vec<(&'static str, Duration)> {
        let mut out: Vec<(&'static str, Duration)> = Vec::new();
        for run in &self.runs {
            match out.iter_mut().find(|(p, _)| *p == run.pass) {
                Some((_, d)) => *d += run.elapsed,
                None => out.push((run.pass, run.elapsed)),
            }
        }
        out
    }

    /// The `--explain` listing: one line per rewrite.
    pub fn explain(&self) -> String {
        self.rewrites
            .iter()
            .map(|r| {
                format!(
                    "{}: matched [{}] -> produced [{}]\n",
                    r.rule,
                    r.matched.join(", "),
                    r.produced.join(", ")
                )
            })
            .collect()
    }
}

/// Runs `stages` over `g` in order.
pub fn run_stages(g: &mut Graph, stages: &[Stage], opts: &RunOptions) -> Result<PipelineReport> {
    let verify_each = opts.verify_each || cfg!(debug_assertions);
    let mut report = PipelineReport::default();
    for stage in stages {
        let rounds = match stage.repeat {
            Repeat::Once => 1,
            Repeat::Fixpoint { cap } => cap,
        };
        let mut converged = false;
        let mut still_changing = Vec::new();
        for _ in 0..rounds {
            still_changing.clear();
            for pass in &stage.passes {
                let mut cx = PassCx::default();
                let start = Instant::now();
                let changed = pass.run(g, &mut cx).map_err(|e| in_pass(pass.name(), e))?;
                let elapsed = start.elapsed();
                if verify_each {
                    verify(g).map_err(|e| {
                        Error::Graph(format!(
                            "the graph is invalid after pass {}: {e}",
                            pass.name()
                        ))
                    })?;
                }
                report.rewrites.extend(cx.rewrites);
                report
                    .notes
                    .extend(cx.notes.into_iter().map(|n| (pass.name(), n)));
                report.runs.push(PassRun {
                    stage: stage.name,
                    pass: pass.name(),
                    elapsed,
                    changed: changed == Changed::Yes,
                });
                if changed == Changed::Yes {
                    still_changing.push(pass.name());
                }
                if opts.print_after.as_deref() == Some(pass.name()) {
                    report
                        .printed
                        .push((pass.name().to_string(), print(g, &PrintOptions::default())));
                }
            }
            if still_changing.is_empty() {
                converged = true;
                break;
            }
        }
        if let Repeat::Fixpoint { cap } = stage.repeat {
            if !converged {
                return Err(Error::Graph(format!(
                    "stage {} did not converge within {cap} rounds; still changing: {}",
                    stage.name,
                    still_changing.join(", ")
                )));
            }
        }
    }
    Ok(report)
}

fn in_pass(pass: &str, e: Error) -> Error {
    match e {
        Error::Graph(msg) => Error::Graph(format!("pass {pass}: {msg}")),
        Error::Node { node, op, msg } => Error::Node {
            node,
            op,
            msg: format!("pass {pass}: {msg}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::patch::Patch;
    use crate::ir::text::parse;

    /// Removes one Identity node per run (so a fixpoint needs several rounds).
    struct DropOneIdentity;

    impl Pass for DropOneIdentity {
        fn name(&self) -> &'static str {
            "drop_one_identity"
        }
        fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
            let found = g.nodes().find_map(|(id, n)| {
                (n.op == crate::ir::Op::Identity).then(|| (id, n.inputs[0].unwrap(), n.outputs[0]))
            });
            let Some((id, input, output)) = found else {
                return Ok(Changed::No);
            };
            let mut p = Patch::new("identity");
            p.redirect(output, p.tap(input));
            p.remove_node(id);
            cx.record(p.apply(g)?);
            Ok(Changed::Yes)
        }
    }

    /// Always claims a change.
    struct Restless;

    impl Pass for Restless {
        fn name(&self) -> &'static str {
            "restless"
        }
        fn run(&self, _: &mut Graph, _: &mut PassCx) -> Result<Changed> {
            Ok(Changed::Yes)
        }
    }

    const CHAIN: &str = "graph g {
  input x: f32[2]
  node r: a: f32[2] = Relu (x)
  node i1: b: f32[2] = Identity (a)
  node i2: c: f32[2] = Identity (b)
  node i3: y: f32[2] = Identity (c)
  output y
}
";

    #[test]
    fn fixpoint_runs_until_nothing_changes_and_records_rewrites() {
        let mut g = parse(CHAIN).unwrap();
        let stages = [Stage {
            name: "cleanup",
            passes: vec![Box::new(DropOneIdentity)],
            repeat: Repeat::Fixpoint { cap: 10 },
        }];
        let opts = RunOptions {
            verify_each: true,
            print_after: Some("drop_one_identity".into()),
        };
        let report = run_stages(&mut g, &stages, &opts).unwrap();
        assert_eq!(g.node_count(), 1);
        assert_eq!(report.rewrites.len(), 3);
        assert_eq!(
            report.runs.len(),
            4,
            "three changing runs and one quiet one"
        );
        assert_eq!(report.printed.len(), 4);
        assert!(
            report
                .explain()
                .starts_with("identity: matched [i1] -> produced []\n")
        );
    }

    #[test]
    fn a_fixpoint_cap_names_the_passes_still_changing() {
        let mut g = parse(CHAIN).unwrap();
        let stages = [Stage {
            name: "loop",
            passes: vec![Box::new(Restless)],
            repeat: Repeat::Fixpoint { cap: 3 },
        }];
        let err = run_stages(&mut g, &stages, &RunOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stage loop did not converge within 3 rounds; still changing: restless"),
            "{err}"
        );
    }
}
