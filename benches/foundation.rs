//! Import and interpreter timings for one ONNX model, as JSON on stdout.
//!
//!     cargo bench --bench foundation -- MODEL.onnx INPUTS_DIR RUNS
//!
//! INPUTS_DIR holds `inputs.json` (graph input name -> .npy file) as written by
//! tests/oracles/ort_run.py. `bench/run.py` drives this beside onnxruntime.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use edgeconv::calibration::npy;
use edgeconv::formats::onnx;
use edgeconv::ir::eval;
use edgeconv::progress::Silent;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [model, inputs_dir, runs] = args.as_slice() else {
        eprintln!("usage: foundation MODEL.onnx INPUTS_DIR RUNS");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let model = Path::new(model);

    let mut import_ms = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let g = onnx::import(model, &Silent).expect("import");
        import_ms.push(start.elapsed().as_secs_f64() * 1e3);
        drop(g);
    }

    let g = onnx::import(model, &Silent).expect("import");
    let mapping: BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(Path::new(inputs_dir).join("inputs.json")).expect("inputs.json"),
    )
    .expect("inputs.json is a name -> file map");
    let inputs: Vec<_> = g
        .inputs
        .iter()
        .map(|&v| {
            let name = &g.value(v).name;
            let file = Path::new(inputs_dir).join(&mapping[name]);
            npy::read_npy(&file).expect("input .npy")
        })
        .collect();
    let mut run_ms = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        eval::run(&g, inputs.clone()).expect("run");
        run_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let report = serde_json::json!({
        "import_ms": { "median": median(import_ms.clone()), "min": import_ms.iter().copied().fold(f64::MAX, f64::min), "max": import_ms.iter().copied().fold(0.0, f64::max) },
        "run_ms": { "median": median(run_ms.clone()), "min": run_ms.iter().copied().fold(f64::MAX, f64::min), "max": run_ms.iter().copied().fold(0.0, f64::max) },
        "threads": rayon::current_num_threads(),
    });
    println!("{report}");
}
