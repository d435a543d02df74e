"""GGUF benchmark: edgeconv's quantizer beside llama.cpp's own
(`llama_model_quantize` through llama-cpp-python, the same thread count) on
the same F32 GGUF, and end-to-end safetensors -> Q4_K_M:

    python3 bench/gguf.py [--runs 3] [--threads 2] [--big] [--out bench/GGUF.md]

Run through `just bench-gguf` (and `just bench`), which builds the release
binary and provisions the llama.cpp venv first. The checkpoint is made by
tests/oracles/make_llm_checkpoint.py (llama, hidden 1024, 8 layers, ff 2816,
16 heads / 4 kv heads, 32000-token vocabulary: 167M parameters); edgeconv
writes its F32 GGUF, then for Q8_0, Q6_K, Q4_K_M and Q2_K each tool
quantizes that file N times (interleaved), each run its own process under
GNU time: median wall seconds and peak RSS, min and max. "identical" compares
every tensor's type and bytes with gguf-py. --big also converts a generated
1.1B-parameter bf16 checkpoint (TinyLlama-1.1B shape) to Q4_K_M, reports
edgeconv's peak RSS, and runs the file in llama.cpp (finite logits). Any failing step stops the script with a non-zero exit.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGECONV = os.path.join(ROOT, "target", "release", "edgeconv")
ORACLES = os.path.join(ROOT, "tests", "oracles")
GNU_TIME = "/usr/bin/time"
TYPES = ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"]


def fail(message):
    sys.exit(f"bench/gguf.py: {message}")


def llama_python():
    path = os.path.join(ROOT, "target", "oracle-paths.json")
    if not os.path.exists(path):
        fail(f"{path} is missing: run `cargo test --test oracle_setup` first")
    paths = json.load(open(path))
    if "llama_python" not in paths:
        fail("oracle-paths.json has no llama_python: run `cargo test --test oracle_setup` first")
    return paths["llama_python"]


def timed(cmd, env=None):
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        proc = subprocess.run([GNU_TIME, "-f", "%e %M", "-o", report.name] + cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            fail(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        wall, rss = report.read().split()[-2:]
        return float(wall), int(rss) / 1024


def stats(values):
    s = sorted(values)
    return s[len(s) // 2], s[0], s[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "GGUF.md"))
    args = ap.parse_args()
    py = llama_python()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    work = tempfile.mkdtemp(prefix="edgeconv-bench-gguf-")
    ck = os.path.join(work, "ck")
    subprocess.run([py, os.path.join(ORACLES, "make_llm_checkpoint.py"), ck, "--arch", "llama", "--hidden", "1024",
                    "--layers", "8", "--ff", "2816", "--heads", "16", "--kv-heads", "4"], check=True)
    f32 = os.path.join(work, "F32.gguf")
    subprocess.run([EDGECONV, "-q", "convert", ck, "--target", "gguf", "--quant", "F32", "-o", f32], check=True)
    rows = []
    for q in TYPES:
        ours_t, theirs_t, ours_m, theirs_m = [], [], [], []
        for _ in range(args.runs):
            t, m = timed([py, os.path.join(ORACLES, "llama_quantize.py"), f32, os.path.join(work, f"llama-{q}.gguf"), q,
                          "--threads", str(args.threads)])
            theirs_t.append(t)
            theirs_m.append(m)
            t, m = timed([EDGECONV, "-q", "convert", f32, "--target", "gguf", "--quant", q, "-o",
                          os.path.join(work, f"edgeconv-{q}.gguf")], env=env)
            ours_t.append(t)
            ours_m.append(m)
        cmp = json.loads(subprocess.run([py, os.path.join(ORACLES, "gguf_compare.py"), os.path.join(work, f"llama-{q}.gguf"),
                                         os.path.join(work, f"edgeconv-{q}.gguf")], check=True, capture_output=True,
                                        text=True).stdout)
        identical = cmp["bytes_equal"] == cmp["tensors"] and cmp["same_names"]
        rows.append((q, stats(theirs_t), stats(ours_t), stats(theirs_m), stats(ours_m), identical, cmp["tensors"]))
    e2e = [timed([EDGECONV, "-q", "convert", ck, "--target", "gguf", "--quant", "Q4_K_M", "-o",
                  os.path.join(work, "e2e.gguf")], env=env) for _ in range(args.runs)]
    big = None
    if args.big:
        bigck = os.path.join(work, "big")
        subprocess.run([py, os.path.join(ORACLES, "make_llm_checkpoint.py"), bigck, "--arch", "llama", "--hidden", "2048",
                        "--layers", "22", "--ff", "5632", "--heads", "32", "--kv-heads", "4", "--dtype", "bfloat16"],
                       check=True)
        size = sum(os.path.getsize(os.path.join(bigck, f)) for f in os.listdir(bigck))
        big_gguf = os.path.join(work, "big.gguf")
        big = (size, timed([EDGECONV, "-q", "convert", bigck, "--target", "gguf", "--quant", "Q4_K_M", "-o",
                            big_gguf], env=env))
        # The file must also run: llama.cpp's logits for a few tokens, all finite.
        logits = os.path.join(work, "big-logits.npy")
        subprocess.run([py, os.path.join(ORACLES, "llama_cpp_run.py"), big_gguf, "logits", "--ids", "1,200,300,400",
                        "--out", logits], check=True)
        finite = subprocess.run([py, "-c", "import numpy, sys; a = numpy.load(sys.argv[1]); print(a.shape[0], bool(numpy.isfinite(a).all()))",
                                 logits], check=True, capture_output=True, text=True).stdout.split()
        if finite[1] != "True":
            fail("llama.cpp's logits for the 1.1B file are not finite")
    lines = [
        "# GGUF quantization: edgeconv beside llama.cpp's quantizer",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}. "
        f"llama-cpp-python 0.3.36 (llama_model_quantize), {args.threads} threads each "
        f"(RAYON_NUM_THREADS / nthread). Median of {args.runs} runs (min-max), each its own process under GNU time.",
        "",
        "Input: the F32 GGUF edgeconv writes for a generated llama checkpoint (hidden 1024, 8 layers, ff 2816, "
        "16/4 heads, 32000 vocabulary, 167M parameters, 670 MB). Command: `python3 bench/gguf.py`.",
        "",
        "| type | llama.cpp s | edgeconv s | speedup | llama.cpp MB | edgeconv MB | tensors identical |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for q, tt, ot, tm, om, same, n in rows:
        lines.append(f"| {q} | {tt[0]:.2f} ({tt[1]:.2f}-{tt[2]:.2f}) | {ot[0]:.2f} ({ot[1]:.2f}-{ot[2]:.2f}) | "
                     f"{tt[0] / ot[0]:.2f}x | {tm[0]:.0f} | {om[0]:.0f} | {'yes' if same else 'NO'} ({n} tensors) |")
    et = stats([t for t, _ in e2e])
    em = stats([m for _, m in e2e])
    lines += ["", f"End to end, safetensors -> Q4_K_M in one step (edgeconv): {et[0]:.2f} s ({et[1]:.2f}-{et[2]:.2f}), "
              f"peak RSS {em[0]:.0f} MB. The two-step route (convert_hf_to_gguf.py, then llama-quantize) needs "
              "torch and transformers, which this benchmark does not install, so it is not timed here."]
    if big:
        size, (t, m) = big
        lines += ["", f"1.1B-parameter bf16 checkpoint ({size / 1e9:.2f} GB) -> Q4_K_M: {t:.1f} s, peak RSS {m:.0f} MB "
                  "(the resident pages of the memory-mapped source count in RSS); llama.cpp loads the file and "
                  "its logits for 4 tokens are finite."]
    open(args.out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
