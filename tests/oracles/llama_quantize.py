"""llama.cpp's own quantizer (`llama_model_quantize`, as `llama-quantize` runs it)
on a GGUF file, through llama-cpp-python.

    python3 llama_quantize.py IN.gguf OUT.gguf FTYPE [--threads N] [--imatrix FILE]
                              [--tensor-type REGEX=TYPE ...] [--stats OUT.json]

FTYPE is a llama.cpp file type name (Q4_K_M, Q8_0, F16, ...). --imatrix reads
llama.cpp's importance-matrix file (GGUF `*.in_sum2`/`*.counts`, or the legacy
binary format) and normalizes it as tools/quantize/quantize.cpp does.
--stats writes {"seconds": wall time of the quantize call}.
"""

import argparse
import ctypes
import json
import struct
import sys
import time

import llama_cpp
import numpy as np


def ftype_id(name):
    key = "LLAMA_FTYPE_ALL_F32" if name.upper() == "F32" else "LLAMA_FTYPE_MOSTLY_" + name.upper()
    if not hasattr(llama_cpp, key):
        sys.exit(f"unknown llama.cpp file type {name}")
    return getattr(llama_cpp, key)


def ggml_type_id(name):
    key = "GGML_TYPE_" + name.upper()
    if not hasattr(llama_cpp, key):
        sys.exit(f"unknown ggml type {name}")
    return getattr(llama_cpp, key)


def read_legacy_imatrix(data):
    entries = {}
    (n_entries,) = struct.unpack_from("<i", data, 0)
    pos = 4
    for _ in range(n_entries):
        (length,) = struct.unpack_from("<i", data, pos)
        pos += 4
        name = data[pos : pos + length].decode()
        pos += length
        ncall, nval = struct.unpack_from("<ii", data, pos)
        pos += 8
        sums = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = sums / np.float32(ncall) if ncall > 0 else sums.copy()
    return entries


def read_gguf_imatrix(path):
    import gguf

    reader = gguf.GGUFReader(path)
    sums, counts = {}, {}
    for t in reader.tensors:
        values = np.asarray(t.data, dtype=np.float32).reshape(-1)
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = values
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = values
    entries = {}
    for name, s in sums.items():
        c = counts[name]
        ne0 = s.size // c.size
        e = np.empty_like(s)
        for j, count in enumerate(c):
            part = slice(j * ne0, (j + 1) * ne0)
            e[part] = s[part] / np.float32(count) if count > 0 else 1.0
        entries[name] = e
    return entries


def read_imatrix(path):
    data = open(path, "rb").read()
    if data[:4] == b"GGUF":
        return read_gguf_imatrix(path)
    return read_legacy_imatrix(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("ftype")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--imatrix")
    ap.add_argument("--tensor-type", action="append", default=[])
    ap.add_argument("--stats")
    args = ap.parse_args()

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = args.threads
    params.ftype = ftype_id(args.ftype)
    params.allow_requantize = True
    keep = []
    if args.imatrix:
        entries = read_imatrix(args.imatrix)
        arr = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
        for i, (name, values) in enumerate(sorted(entries.items())):
            values = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(values)
            arr[i].name = name.encode()
            arr[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = values.size
        arr[len(entries)].name = None
        keep.append(arr)
        params.imatrix = arr
    if args.tensor_type:
        arr = (llama_cpp.llama_model_tensor_override * (len(args.tensor_type) + 1))()
        for i, spec in enumerate(args.tensor_type):
            pattern, ty = spec.rsplit("=", 1)
            arr[i].pattern = pattern.encode()
            arr[i].type = ggml_type_id(ty)
        arr[len(args.tensor_type)].pattern = None
        keep.append(arr)
        params.tt_overrides = arr

    start = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(args.input.encode(), args.output.encode(), ctypes.byref(params))
    seconds = time.perf_counter() - start
    if rc != 0:
        sys.exit(f"llama_model_quantize failed with {rc}")
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump({"seconds": seconds}, f)


if __name__ == "__main__":
    main()
