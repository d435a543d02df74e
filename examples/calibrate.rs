//! Calibrates an ONNX model and reports time and the ranges found, for
//! measuring calibration's speed and memory (run it under `/usr/bin/time -v`):
//!
//!     cargo run --release --example calibrate -- MODEL DATA [METHOD] [KEY=VALUE...]
//!
//! DATA is `tokens:FILE`, `arrays:DIR`, `images:DIR` or `random:N`; METHOD
//! as `Method::from_str` reads it (default minmax). `images:` takes
//! preprocess keys as KEY=VALUE; `tokens:` takes `length=N`; `passes=default`
//! runs the default pass pipeline (folding, fusion) before calibrating, as a
//! quantizer would.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use edgeconv::calibration::calibrate::{Options, calibrate};
use edgeconv::calibration::data::{DataSpec, Dataset, Preprocess, RandomOptions, TokenOptions};
use edgeconv::calibration::observer::Method;
use edgeconv::formats::onnx;
use edgeconv::passes::presets::default_pipeline;
use edgeconv::passes::{RunOptions, run_stages};
use edgeconv::progress::Silent;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run() -> edgeconv::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        || edgeconv::Error::Input("usage: calibrate MODEL DATA [METHOD] [KEY=VALUE...]".into());
    let model = PathBuf::from(args.first().ok_or_else(usage)?);
    let data = args.get(1).ok_or_else(usage)?;
    let method: Method = args.get(2).map_or(Ok(Method::MinMax), |m| m.parse())?;
    let pairs: Vec<(&str, &str)> = args
        .iter()
        .skip(3)
        .filter_map(|a| a.split_once('='))
        .collect();

    let start = Instant::now();
    let mut g = onnx::import(&model, &Silent)?;
    if pairs.contains(&("passes", "default")) {
        run_stages(&mut g, &default_pipeline(), &RunOptions::default())?;
    }
    let spec = match data.split_once(':') {
        Some(("tokens", path)) => {
            let mut options = TokenOptions::default();
            for (k, v) in &pairs {
                if *k == "length" {
                    options.length = v.parse().ok();
                }
            }
            DataSpec::Tokens {
                path: path.into(),
                options,
            }
        }
        Some(("arrays", dir)) => DataSpec::Arrays(dir.into()),
        Some(("images", dir)) => {
            let mut preprocess = Preprocess::default();
            for (k, v) in &pairs {
                preprocess.set(k, v)?;
            }
            preprocess.check()?;
            DataSpec::Images {
                dir: dir.into(),
                preprocess,
                input: None,
            }
        }
        Some(("random", n)) => DataSpec::Random(RandomOptions {
            samples: n.parse().map_err(|_| usage())?,
            ..RandomOptions::default()
        }),
        _ => return Err(usage()),
    };
    let data = Dataset::open(&spec, &g)?;
    if let Some(w) = data.warning() {
        eprintln!("warning: {w}");
    }
    let loaded = start.elapsed();
    let options = Options {
        method,
        ..Options::default()
    };
    let cal = calibrate(&g, &data, &options, &Silent)?;
    let elapsed = start.elapsed();
    for t in cal.tensors.iter().take(3).chain(cal.tensors.last()) {
        println!("{:40} {:?}", t.name, t.range);
    }
    println!(
        "{method}: {} tensors over {} samples of {} in {:.2} s ({:.2} s import and open), {} threads",
        cal.tensors.len(),
        cal.samples,
        data.describe(),
        elapsed.as_secs_f64(),
        loaded.as_secs_f64(),
        rayon::current_num_threads()
    );
    Ok(())
}
