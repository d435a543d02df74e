//! The LiteRT oracle: runs .tflite files in ai-edge-litert through
//! tests/oracles/litert_run.py, many models per Python process.
//!
//! [`run_batch`] runs every job with each requested op resolver and returns
//! every outcome: a model that fails to load or run is an `Err` in its
//! [`Run`], not a panic, so a test can report all failures at once
//! ([`expect_all_ok`]) or assert that a broken model is refused. If LiteRT
//! takes the whole process down (an abort or crash inside the runtime), that
//! run is recorded as an error carrying the process's stderr and the batch
//! resumes after it. Problems with the oracle itself (the script failing
//! before it ran anything, unreadable results) panic with the command output.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use edgeconv::calibration::npy::{encode_npy, read_npz};
use edgeconv::ir::Tensor;
use serde::Deserialize;
use serde_json::json;

use super::samples::Sample;

/// The op resolver a model is loaded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolver {
    /// `OpResolverType.BUILTIN_REF`: the builtin reference kernels, no delegate.
    Ref,
    /// The default resolver (`OpResolverType.AUTO`): optimized builtin
    /// kernels with the XNNPACK delegate applied.
    Default,
}

impl Resolver {
    pub const BOTH: [Resolver; 2] = [Resolver::Ref, Resolver::Default];

    /// The name litert_run.py uses (and the npz key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Resolver::Ref => "ref",
            Resolver::Default => "default",
        }
    }

    fn parse(name: &str) -> Resolver {
        Resolver::BOTH
            .into_iter()
            .find(|r| r.name() == name)
            .unwrap_or_else(|| panic!("litert_run.py reported unknown resolver '{name}'"))
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of one model input.
#[derive(Clone, Debug)]
pub enum Input {
    /// A `.npy` file, e.g. a sample's.
    File(PathBuf),
    /// A tensor, written to a temporary `.npy` for the run.
    Tensor(Tensor),
}

/// One model to run: its inputs by name (the `serving_default` signature's
/// input names, or the input tensors' names for a model without that
/// signature) and the resolvers to run it with (both unless set).
#[derive(Clone, Debug)]
pub struct Job {
    pub model: PathBuf,
    pub inputs: Vec<(String, Input)>,
    pub resolvers: Vec<Resolver>,
}

impl Job {
    pub fn new(model: impl Into<PathBuf>) -> Job {
        Job {
            model: model.into(),
            inputs: Vec::new(),
            resolvers: Resolver::BOTH.to_vec(),
        }
    }

    /// `model` run on `sample`'s input files.
    pub fn for_sample(model: impl Into<PathBuf>, sample: &Sample) -> Job {
        let mut job = Job::new(model);
        for (name, file) in &sample.inputs {
            job = job.input_file(name, file);
        }
        job
    }

    pub fn input(mut self, name: &str, value: Tensor) -> Job {
        self.inputs.push((name.to_string(), Input::Tensor(value)));
        self
    }

    pub fn input_file(mut self, name: &str, npy: impl Into<PathBuf>) -> Job {
        self.inputs
            .push((name.to_string(), Input::File(npy.into())));
        self
    }

    pub fn resolvers(mut self, resolvers: &[Resolver]) -> Job {
        self.resolvers = resolvers.to_vec();
        self
    }
}

/// What one resolver's run of a model gave.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// Outputs by name: the signature's output names, which LiteRT lists
    /// sorted by name (it keeps a signature in a map), or without a signature
    /// the output tensors' names in subgraph output order.
    pub outputs: Vec<(String, Tensor)>,
    /// The model's builtin op names in execution order, e.g. `["ADD", "RELU"]`.
    pub ops: Vec<String>,
    /// Indices into `ops` of the ops a delegate (XNNPACK) took over; empty
    /// with [`Resolver::Ref`].
    pub delegated: Vec<usize>,
}

impl RunOutput {
    pub fn output(&self, name: &str) -> &Tensor {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.outputs.iter().map(|(n, _)| n.as_str()).collect();
                panic!("no output '{name}'; outputs are {names:?}")
            })
    }

    /// The names of the ops the delegate left to the builtin kernels.
    pub fn not_delegated(&self) -> Vec<&str> {
        (0..self.ops.len())
            .filter(|i| !self.delegated.contains(i))
            .map(|i| self.ops[i].as_str())
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Run {
    pub resolver: Resolver,
    /// The outputs, or LiteRT's error (load, prepare, invoke, wrong inputs,
    /// or the process dying, with its stderr).
    pub outcome: Result<RunOutput, String>,
}

/// Every requested run of one job, in the job's resolver order.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub model: PathBuf,
    pub runs: Vec<Run>,
}

impl JobResult {
    /// The run with `resolver`; panics if the job did not ask for it.
    pub fn run(&self, resolver: Resolver) -> &Run {
        self.runs
            .iter()
            .find(|r| r.resolver == resolver)
            .unwrap_or_else(|| panic!("{}: not run with {resolver}", self.model.display()))
    }

    /// The successful run with `resolver`; panics with LiteRT's error if it failed.
    pub fn ok(&self, resolver: Resolver) -> &RunOutput {
        match &self.run(resolver).outcome {
            Ok(out) => out,
            Err(e) => panic!("{} [{resolver}]: {e}", self.model.display()),
        }
    }

    /// The error of the run with `resolver`; panics if it succeeded.
    pub fn err(&self, resolver: Resolver) -> &str {
        match &self.run(resolver).outcome {
            Ok(_) => panic!(
                "{} [{resolver}]: ran, but was expected to fail",
                self.model.display()
            ),
            Err(e) => e,
        }
    }

    /// `MODEL [resolver]: error` for every failed run.
    pub fn failures(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter_map(|r| {
                let e = r.outcome.as_ref().err()?;
                Some(format!("{} [{}]: {e}", self.model.display(), r.resolver))
            })
            .collect()
    }
}

/// Panics listing every failed run of every job, if any failed.
pub fn expect_all_ok(results: &[JobResult]) {
    let failures: Vec<String> = results.iter().flat_map(JobResult::failures).collect();
    let runs: usize = results.iter().map(|r| r.runs.len()).sum();
    assert!(
        failures.is_empty(),
        "{} of {runs} LiteRT runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// [`run_batch`] then [`expect_all_ok`].
pub fn run_batch_ok(jobs: &[Job]) -> Vec<JobResult> {
    let results = run_batch(jobs);
    expect_all_ok(&results);
    results
}

/// One line of litert_run.py's results file.
#[derive(Deserialize)]
struct Line {
    job: usize,
    resolver: String,
    status: String,
    error: Option<String>,
    outputs: Option<Vec<String>>,
    ops: Option<Vec<String>>,
    delegated: Option<Vec<usize>>,
}

/// Runs every job with each of its resolvers, in one LiteRT process (more
/// if LiteRT crashes the process); one [`JobResult`] per job, in job order.
pub fn run_batch(jobs: &[Job]) -> Vec<JobResult> {
    run_batch_with_env(jobs, &[])
}

/// [`run_batch`] with extra environment variables for the Python process,
/// e.g. litert_run.py's `EDGECONV_LITERT_ABORT_ON` in the harness's own tests.
pub fn run_batch_with_env(jobs: &[Job], env: &[(&str, &OsStr)]) -> Vec<JobResult> {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let dir = dir.path();

    let inputs: Vec<BTreeMap<&str, PathBuf>> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let mut names: Vec<&str> = job.inputs.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                panic!(
                    "job {i} ({}) gives input '{}' twice",
                    job.model.display(),
                    w[0]
                );
            }
            job.inputs
                .iter()
                .enumerate()
                .map(|(k, (name, input))| {
                    let file = match input {
                        Input::File(file) => file.clone(),
                        Input::Tensor(t) => {
                            let file = dir.join(format!("job{i}-input{k}.npy"));
                            let bytes = encode_npy(t).unwrap_or_else(|e| {
                                panic!("job {i} input '{name}' cannot be a .npy: {e}")
                            });
                            fs::write(&file, bytes)
                                .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
                            file
                        }
                    };
                    (name.as_str(), file)
                })
                .collect()
        })
        .collect();

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); jobs.len()];
    // (job index, resolvers still to run) for the next process.
    let mut pending: Vec<(usize, Vec<Resolver>)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, job)| !job.resolvers.is_empty())
        .map(|(i, job)| (i, job.resolvers.clone()))
        .collect();
    let mut attempt = 0;
    while !pending.is_empty() {
        let out_npz = |k: usize| dir.join(format!("attempt{attempt}-job{}.npz", pending[k].0));
        let spec: Vec<serde_json::Value> = pending
            .iter()
            .enumerate()
            .map(|(k, (i, resolvers))| {
                json!({
                    "model": jobs[*i].model,
                    "inputs": inputs[*i],
                    "out": out_npz(k),
                    "resolvers": resolvers.iter().map(|r| r.name()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let jobs_file = dir.join(format!("attempt{attempt}-jobs.json"));
        let results_file = dir.join(format!("attempt{attempt}-results.jsonl"));
        super::write(&jobs_file, &serde_json::to_string_pretty(&spec).unwrap());
        let mut cmd = script_command();
        cmd.arg("run").arg(&jobs_file).arg(&results_file);
        cmd.envs(env.iter().copied());
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let text = fs::read_to_string(&results_file).unwrap_or_default();

        let mut open: Option<(usize, Resolver)> = None;
        for line in text.lines() {
            let mut line: Line = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", results_file.display()));
            let resolver = Resolver::parse(&line.resolver);
            let (k, i) = (line.job, pending[line.job].0);
            let outcome = match std::mem::take(&mut line.status).as_str() {
                "started" => {
                    open = Some((k, resolver));
                    continue;
                }
                "ok" => Ok(read_outputs(&out_npz(k), resolver, line)),
                "error" => Err(line.error.unwrap_or_default()),
                other => panic!("{}: unknown status '{other}'", results_file.display()),
            };
            open = None;
            runs[i].push(Run { resolver, outcome });
        }

        if output.status.success() {
            let done: usize = runs.iter().map(Vec::len).sum();
            let wanted: usize = jobs.iter().map(|j| j.resolvers.len()).sum();
            if open.is_some() || done != wanted {
                panic!(
                    "{cmd:?} finished, but reported {done} of {wanted} runs:\n{}",
                    describe_output(&output)
                );
            }
            break;
        }
        let Some((k, resolver)) = open else {
            panic!(
                "{cmd:?} failed with {} outside any model run:\n{}",
                output.status,
                describe_output(&output)
            );
        };
        // LiteRT took the process down in this run: record it, go on after it.
        runs[pending[k].0].push(Run {
            resolver,
            outcome: Err(format!(
                "the LiteRT process died ({}):\n{}",
                output.status,
                super::tail(&output.stderr)
            )),
        });
        let (i, resolvers) = &pending[k];
        let after = resolvers.iter().position(|&r| r == resolver).unwrap() + 1;
        let mut rest = vec![(*i, resolvers[after..].to_vec())];
        rest.extend(pending.drain(k + 1..));
        pending = rest.into_iter().filter(|(_, r)| !r.is_empty()).collect();
        attempt += 1;
    }

    jobs.iter()
        .zip(runs)
        .map(|(job, runs)| JobResult {
            model: job.model.clone(),
            runs,
        })
        .collect()
}

fn read_outputs(npz: &Path, resolver: Resolver, line: Line) -> RunOutput {
    let mut arrays: BTreeMap<String, Tensor> = read_npz(npz)
        .unwrap_or_else(|e| panic!("cannot read LiteRT outputs: {e}"))
        .into_iter()
        .collect();
    let outputs = line
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            let key = format!("{resolver}/{name}");
            let t = arrays
                .remove(&key)
                .unwrap_or_else(|| panic!("{}: no array '{key}'", npz.display()));
            (name, t)
        })
        .collect();
    RunOutput {
        outputs,
        ops: line.ops.unwrap_or_default(),
        delegated: line.delegated.unwrap_or_default(),
    }
}

/// A model as LiteRT loads it with the reference resolver (no delegate).
#[derive(Clone, Debug, Deserialize)]
pub struct Description {
    pub model: PathBuf,
    /// Subgraph 0's operators in execution order.
    pub ops: Vec<OpDetail>,
    /// Subgraph 0's inputs and outputs, in subgraph order.
    pub inputs: Vec<TensorDetail>,
    pub outputs: Vec<TensorDetail>,
    /// Signature key -> its input and output names (each sorted by name:
    /// LiteRT keeps a signature in a map).
    pub signatures: BTreeMap<String, SignatureDetail>,
    /// Tensors of subgraph 0.
    pub tensor_count: usize,
    pub subgraph_count: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct OpDetail {
    /// The builtin operator's name, e.g. `CONV_2D`.
    pub name: String,
    /// Tensor indices (-1 for an absent optional input).
    pub inputs: Vec<i64>,
    pub outputs: Vec<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TensorDetail {
    pub name: String,
    pub index: usize,
    pub shape: Vec<i64>,
    /// `shape` with -1 for dynamic dimensions.
    pub shape_signature: Vec<i64>,
    /// NumPy's name of the element type: `float32`, `int8`, `bool`, ….
    pub dtype: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SignatureDetail {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl Description {
    /// The op names in execution order.
    pub fn op_names(&self) -> Vec<&str> {
        self.ops.iter().map(|op| op.name.as_str()).collect()
    }

    /// How many ops named `name` (e.g. `"TRANSPOSE"`) the model has.
    pub fn count_op(&self, name: &str) -> usize {
        self.ops.iter().filter(|op| op.name == name).count()
    }
}

/// Describes one model; panics with LiteRT's error if it does not load.
pub fn describe(model: &Path) -> Description {
    describe_all(&[model]).pop().unwrap()
}

/// Describes every model in one process; panics listing every model that
/// does not load.
pub fn describe_all<P: AsRef<Path>>(models: &[P]) -> Vec<Description> {
    let results = describe_batch(models);
    let failures: Vec<String> = results.iter().filter_map(|r| r.clone().err()).collect();
    assert!(
        failures.is_empty(),
        "LiteRT cannot load {} of {} models:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    results.into_iter().map(Result::unwrap).collect()
}

/// Describes every model in one process; `Err("MODEL: error")` for a model
/// LiteRT does not load.
pub fn describe_batch<P: AsRef<Path>>(models: &[P]) -> Vec<Result<Description, String>> {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let out = dir.path().join("describe.json");
    let mut cmd = script_command();
    cmd.arg("describe").arg(&out);
    cmd.args(models.iter().map(AsRef::as_ref));
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed with {}:\n{}",
            output.status,
            describe_output(&output)
        );
    }
    let text =
        fs::read_to_string(&out).unwrap_or_else(|e| panic!("cannot read {}: {e}", out.display()));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not the expected JSON: {e}", out.display()));
    assert_eq!(entries.len(), models.len(), "{}", out.display());
    entries
        .into_iter()
        .map(|entry| {
            if entry["ok"] == json!(true) {
                Ok(serde_json::from_value(entry)
                    .unwrap_or_else(|e| panic!("{}: unexpected description: {e}", out.display())))
            } else {
                let field = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
                Err(format!("{}: {}", field("model"), field("error")))
            }
        })
        .collect()
}

fn script_command() -> Command {
    let mut cmd = Command::new(super::oracle_python());
    cmd.arg(super::oracles_dir().join("litert_run.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    cmd
}

fn describe_output(output: &Output) -> String {
    format!(
        "--- stderr (tail) ---\n{}\n--- stdout (tail) ---\n{}",
        super::tail(&output.stderr),
        super::tail(&output.stdout)
    )
}
