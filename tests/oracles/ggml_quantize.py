"""ggml's own quantizer (`ggml_quantize_chunk` in llama.cpp's libggml-base,
the function llama-quantize calls) on a float32 matrix, through ctypes.

    python3 ggml_quantize.py TYPE ROWS.npy OUT.bin [--imatrix IMATRIX.npy]

ROWS.npy is float32 [rows, n_per_row]; IMATRIX.npy float32 [n_per_row].
TYPE is a ggml type name (Q4_0, Q8_0, Q2_K, ..., F16, BF16).
"""

import argparse
import ctypes
import glob
import os
import sys

import llama_cpp
import numpy as np


def ggml_base():
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    found = sorted(glob.glob(os.path.join(lib_dir, "libggml-base.so*")))
    if not found:
        sys.exit(f"no libggml-base in {lib_dir}")
    lib = ctypes.CDLL(found[0])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("type")
    ap.add_argument("rows")
    ap.add_argument("out")
    ap.add_argument("--imatrix")
    args = ap.parse_args()
    # llama-cpp-python does not export every id; BF16's is fixed by the GGUF spec.
    ty = {"BF16": 30}.get(args.type.upper())
    if ty is None:
        key = "GGML_TYPE_" + args.type.upper()
        if not hasattr(llama_cpp, key):
            sys.exit(f"unknown ggml type {args.type}")
        ty = getattr(llama_cpp, key)
    x = np.ascontiguousarray(np.load(args.rows), dtype=np.float32)
    if x.ndim != 2:
        sys.exit("rows must be 2-D")
    nrows, n_per_row = x.shape
    imatrix = None
    if args.imatrix:
        imatrix = np.ascontiguousarray(np.load(args.imatrix), dtype=np.float32)
        if imatrix.shape != (n_per_row,):
            sys.exit(f"imatrix must have {n_per_row} values")
    lib = ggml_base()
    out = np.zeros(lib.ggml_row_size(ty, n_per_row) * nrows, dtype=np.uint8)
    written = lib.ggml_quantize_chunk(
        ty, x.ctypes.data, out.ctypes.data, 0, nrows, n_per_row,
        None if imatrix is None else imatrix.ctypes.data,
    )
    if written != out.size:
        sys.exit(f"ggml wrote {written} bytes, expected {out.size}")
    out.tofile(args.out)


if __name__ == "__main__":
    main()
