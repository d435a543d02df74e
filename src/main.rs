//! The `edgeconv` command. Its contract (subcommands, `--json` schema, exit
//! codes) is documented in docs/CLI.md.

mod cli;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edgeconv::exit;
use edgeconv::ir::text::{PrintOptions, print};
use edgeconv::progress::{Progress, Silent};

use cli::convert::{ConvertRequest, TargetName};
use cli::inputs::InputArg;
use cli::inspect::Summary;
use cli::progress_bar::TerminalBar;
use edgeconv::passes::pin_shapes::Pin;

/// Turns trained models (ONNX, safetensors) into on-device artifacts.
///
/// Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 unsupported
/// op or feature.
#[derive(Parser)]
#[command(name = "edgeconv", version, about, long_about)]
struct Cli {
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a model without reading its weights: inputs, outputs, ops,
    /// parameters by dtype, symbolic dims, largest tensors.
    Inspect(InspectArgs),
    /// Run a model with the reference interpreter on .npy inputs and write
    /// every output to an .npz archive.
    Run(RunArgs),
    /// Convert a model for a target: import, optimize, legalize, check that
    /// the target supports every node, write the artifact.
    Convert(Box<ConvertArgs>),
}

#[derive(Args)]
struct InspectArgs {
    /// An .onnx file, a .safetensors file or a Hugging Face checkpoint folder.
    model: PathBuf,
    /// Print one JSON object (schema in docs/CLI.md) instead of text.
    #[arg(long, conflicts_with = "ir")]
    json: bool,
    /// Print the imported graph in the IR text form.
    #[arg(long)]
    ir: bool,
}

#[derive(Args)]
struct RunArgs {
    /// An .onnx file.
    model: PathBuf,
    /// A graph input and the .npy file holding it; give one per model input.
    #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<InputArg>,
    /// The .npz archive to write, one array per graph output, keyed by output name.
    #[arg(short, long, value_name = "OUT.npz")]
    output: PathBuf,
    /// Which runtime computes the outputs: edgeconv's reference interpreter, or
    /// tract (an independent ONNX runtime, for cross-checking; .onnx models only).
    #[arg(long, value_enum, default_value_t = cli::run::Engine::Edgeconv)]
    engine: cli::run::Engine,
}

#[derive(Args)]
struct ConvertArgs {
    /// An .onnx file, a .safetensors file or a Hugging Face checkpoint folder.
    model: PathBuf,
    /// The output format.
    #[arg(long, value_enum)]
    target: TargetName,
    /// The artifact to write (side files, such as ONNX external data, go next to it).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Passes to run instead of the target's default list, repeated until
    /// nothing changes (noop, const_fold, cse, dce).
    #[arg(long, value_delimiter = ',', value_name = "PASS,...")]
    passes: Option<Vec<String>>,
    /// Fix a symbolic dim: SYMBOL=VALUE, INPUT=D0xD1x... or INPUT:AXIS=VALUE.
    #[arg(long = "pin", value_name = "NAME=VALUE")]
    pins: Vec<Pin>,
    /// Print every rewrite the passes applied (rule, nodes matched, nodes produced).
    #[arg(long)]
    explain: bool,
    /// Print the IR after every run of this pass.
    #[arg(long, value_name = "PASS")]
    print_after: Option<String>,
    /// Print one JSON object (schema in docs/CLI.md) instead of text.
    #[arg(long)]
    json: bool,
    /// Print per-pass timing to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// ONNX: put every tensor of at least 1 KiB in OUT.data (otherwise only
    /// when the model would pass 2 GiB).
    #[arg(long)]
    external_data: bool,
    /// TFLite: layout of the model's inputs and outputs of rank 3 or more.
    #[arg(long, value_enum, default_value_t = cli::convert::IoLayoutArg::Source)]
    io_layout: cli::convert::IoLayoutArg,
    /// TFLite: `fp16` weights, `int8` full integer (needs --calib), `dynamic`
    /// int8 weights with float activations. GGUF: a llama.cpp file type
    /// (F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q3_K_L,
    /// Q3_K_M, Q3_K_S, Q2_K, Q4_0, Q4_1, Q5_0, Q5_1).
    #[arg(long, value_name = "MODE")]
    quant: Option<String>,
    /// GGUF: give tensors whose name matches GLOB (`*`, `?`) this type
    /// instead of the file type's choice, e.g. `blk.*.ffn_down.weight=Q6_K`; repeatable.
    #[arg(long, value_name = "GLOB=TYPE", help_heading = "Quantization")]
    tensor_type: Vec<String>,
    /// GGUF: llama.cpp importance matrix (llama-imatrix output, GGUF or legacy
    /// format) for the K-quant and Q4_0..Q5_1 searches.
    #[arg(long, value_name = "FILE", help_heading = "Quantization")]
    imatrix: Option<PathBuf>,
    /// int8: calibration data: a folder of arrays (.npy/.npz) or of PNG/JPEG
    /// images (with --preprocess), a token-id file, `KIND:PATH` (arrays,
    /// images, tokens), or `random[:N]` (warns: random data costs accuracy).
    #[arg(long, value_name = "SPEC", help_heading = "Quantization")]
    calib: Option<String>,
    /// int8: how ranges are chosen: percentile[:P] (default, P = 99.99),
    /// minmax, moving-average[:MOMENTUM], mse, entropy (and -symmetric variants).
    #[arg(long, value_name = "METHOD", help_heading = "Quantization")]
    calib_method: Option<String>,
    /// int8: calibrate on part of --calib and evaluate on the rest:
    /// [first:|last:]COUNT, FRACTION or PERCENT%.
    #[arg(long, value_name = "SPLIT", help_heading = "Quantization")]
    calib_split: Option<String>,
    /// int8: evaluation data for the accuracy report (same forms as --calib;
    /// `none` skips the measurement). Default: the calibration data.
    #[arg(long, value_name = "SPEC", help_heading = "Quantization")]
    eval: Option<String>,
    /// Image preprocessing: a TOML file or KEY=VALUE (resize, filter, crop,
    /// channels, scale, mean, std, layout), repeatable, applied in order.
    #[arg(long, value_name = "TOML|KEY=VALUE", help_heading = "Quantization")]
    preprocess: Vec<String>,
    /// int8: type of the model's inputs: float, int8 or uint8.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "float",
        help_heading = "Quantization"
    )]
    input_type: String,
    /// int8: type of the model's outputs: float, int8 or uint8.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "float",
        help_heading = "Quantization"
    )]
    output_type: String,
    /// int8/dynamic: keep nodes whose name matches GLOB (`*`, `?`) in float; repeatable.
    #[arg(long, value_name = "GLOB", help_heading = "Quantization")]
    keep_float: Vec<String>,
    /// int8: keep the most damaging layers in float until every output's
    /// simulated SQNR reaches DB on the evaluation data; exit 1 if it cannot.
    #[arg(long, value_name = "DB", help_heading = "Quantization")]
    min_sqnr: Option<f64>,
    /// int8: do not fold the mean error of rounded filters into the biases.
    #[arg(long, help_heading = "Quantization")]
    no_bias_correction: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress: Box<dyn Progress> = if cli.quiet || !std::io::stderr().is_terminal() {
        Box::new(Silent)
    } else {
        Box::new(TerminalBar::default())
    };
    let result = match cli.command {
        Command::Inspect(args) => inspect(&args, progress.as_ref()),
        Command::Run(args) => run(&args, cli.quiet, progress.as_ref()),
        Command::Convert(args) => convert(*args, cli.quiet, progress.as_ref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run(args: &RunArgs, quiet: bool, progress: &dyn Progress) -> anyhow::Result<()> {
    let outputs = cli::run::run(
        &args.model,
        &args.inputs,
        &args.output,
        args.engine,
        progress,
    )?;
    if !quiet {
        eprintln!("wrote {}:", args.output.display());
        for line in outputs {
            eprintln!("  {line}");
        }
    }
    Ok(())
}

/// The error and its causes on one line. Library errors already show their
/// source (`path: No such file`), so a cause already in the text is skipped.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The documented exit code of a failure: the library error's own code when
/// there is one, else bad input.
fn exit_code(err: &anyhow::Error) -> u8 {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<edgeconv::Error>())
        .map_or(exit::BAD_INPUT, edgeconv::Error::exit_code);
    u8::try_from(code).unwrap_or(1)
}

fn inspect(args: &InspectArgs, progress: &dyn Progress) -> anyhow::Result<()> {
    let g = cli::load::import(&args.model, progress)?;
    let text = if args.ir {
        print(&g, &PrintOptions::default())
    } else {
        let summary = Summary::of(&g, &args.model.display().to_string());
        if args.json {
            let mut json = serde_json::to_string_pretty(&summary)?;
            json.push('\n');
            json
        } else {
            summary.to_text()
        }
    };
    write_stdout(&text)
}

fn convert(args: ConvertArgs, quiet: bool, progress: &dyn Progress) -> anyhow::Result<()> {
    let request = ConvertRequest {
        model: args.model,
        target: args.target,
        output: args.output,
        passes: args.passes,
        pins: args.pins,
        explain: args.explain,
        print_after: args.print_after,
        json: args.json,
        verbose: args.verbose,
        external_data: args.external_data,
        io_layout: args.io_layout,
        quant: args.quant,
        tensor_types: args.tensor_type,
        imatrix: args.imatrix,
        quant_flags: cli::quantize::QuantFlags {
            calib: args.calib,
            method: args.calib_method,
            split: args.calib_split.map(|s| s.parse()).transpose()?,
            eval: args.eval,
            preprocess: args.preprocess,
            input_type: args.input_type.parse()?,
            output_type: args.output_type.parse()?,
            keep_float: args.keep_float,
            min_sqnr: args.min_sqnr,
            no_bias_correction: args.no_bias_correction,
        },
    };
    let (stdout, stderr) = match cli::convert::convert(&request, progress) {
        Ok(printed) => printed,
        Err(err) => {
            // A machine reading --json gets the whole coverage report of a refused model.
            if let Some(refused) = err.downcast_ref::<cli::convert::Refused>()
                && request.json
            {
                write_stdout(&refused.coverage.to_json())?;
            }
            return Err(err);
        }
    };
    if !quiet || request.verbose {
        eprint!("{stderr}");
    }
    write_stdout(&stdout)
}

/// Writes to stdout; a closed pipe (`edgeconv inspect m | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
