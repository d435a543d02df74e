"""Runs an ONNX model in onnxruntime (CPU, graph optimizations off, so the
result is the model as written) and writes every graph output to an npz.

    ort_run.py MODEL.onnx --input NAME=FILE.npy ... --out OUT.npz
    ort_run.py MODEL.onnx --random-inputs SEED [--dims N=1,seq=8] [--save-inputs DIR] --out OUT.npz

With --random-inputs, inputs not given by --input are generated: standard
normal for floats, integers in [0, 10) for integer types, random booleans.
A symbolic dimension takes its value from --dims, else 1; an unnamed one is 1.
"""

import argparse
import json
import sys
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnxruntime as ort

DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(bfloat16)": ml_dtypes.bfloat16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def parse_dims(text):
    dims = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        if not value.isdigit():
            sys.exit(f"--dims: expected NAME=INT, got {item!r}")
        dims[name] = int(value)
    return dims


def random_input(rng, meta, dims):
    if meta.type not in DTYPES:
        sys.exit(f"input {meta.name!r}: cannot generate values of type {meta.type}")
    dtype = DTYPES[meta.type]
    shape = [d if isinstance(d, int) else dims.get(d, 1) for d in meta.shape]
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 10, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def make_session(model_path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def run(session, feeds):
    """All graph outputs, keyed by output name."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def save_inputs(out_dir, feeds):
    """Writes OUT_DIR/<name>.npy ('/' and ':' become '_') and the name -> file map inputs.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping = {name: name.replace("/", "_").replace(":", "_") + ".npy" for name in feeds}
    for name, array in feeds.items():
        np.save(out_dir / mapping[name], array)
    (out_dir / "inputs.json").write_text(json.dumps(mapping, indent=2) + "\n")


def write_npz(path, arrays):
    """Like np.savez, but any output name works as a key (np.savez reserves 'file'),
    and entries carry a fixed date so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            if not isinstance(array, np.ndarray):
                sys.exit(f"output {name!r} is a {type(array).__name__}, not a tensor")
            with zf.open(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    parser.add_argument("--out", required=True, help="npz to write, keyed by output name")
    parser.add_argument("--random-inputs", type=int, metavar="SEED")
    parser.add_argument("--dims", help="values for symbolic dims, e.g. N=1,seq=8")
    parser.add_argument("--save-inputs", metavar="DIR", help="write the inputs used as DIR/<name>.npy + inputs.json")
    args = parser.parse_args()

    session = make_session(args.model)
    metas = {m.name: m for m in session.get_inputs()}

    feeds = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep:
            sys.exit(f"--input: expected NAME=FILE.npy, got {item!r}")
        if name not in metas:
            sys.exit(f"--input: model has no input {name!r}; inputs are {list(metas)}")
        feeds[name] = np.load(path)
    if args.random_inputs is not None:
        rng = np.random.default_rng(args.random_inputs)
        dims = parse_dims(args.dims)
        for name, meta in metas.items():
            if name not in feeds:
                feeds[name] = random_input(rng, meta, dims)
    missing = [n for n in metas if n not in feeds]
    if missing:
        sys.exit(f"no value for inputs {missing}: pass --input NAME=FILE.npy or --random-inputs SEED")

    if args.save_inputs:
        save_inputs(args.save_inputs, feeds)
    write_npz(args.out, run(session, feeds))


if __name__ == "__main__":
    main()
