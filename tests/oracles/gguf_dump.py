"""gguf-py's view of a GGUF file, for tests/gguf_container.rs.

    python3 gguf_dump.py dump FILE     prints the file as JSON (below)
    python3 gguf_dump.py write FILE    writes a file with gguf-py's GGUFWriter
                                       (every value type, nested arrays,
                                       alignment 64, F32/F16/BF16/Q8_0/Q4_K
                                       tensors), then prints it as `dump` does

JSON: {"version", "alignment", "data_offset",
       "kv": [[key, value], ...] in file order, where a value is
           {"type": id, "value": v} (integers, bools, strings),
           {"type": id, "bits": n} (floats, as their IEEE bit pattern), or
           {"type": 9, "elem": id, "items": [value, ...]},
       "tensors": [{"name", "type": id, "ne": [dims fastest first],
                    "start": absolute byte offset, "bytes", "sha256",
                    "shape": numpy shape (float tensors only)}, ...]}
Values are rebuilt from the parts gguf-py's reader parsed, so nested arrays
keep their structure (its `contents()` flattens them).
"""

import hashlib
import json
import sys

import numpy as np

import gguf
from gguf import GGUFValueType as T

FLOATS = {T.FLOAT32: np.uint32, T.FLOAT64: np.uint64}


def value(parts, i, ty):
    """The value of type `ty` whose parts start at parts[i]; returns (value, next i)."""
    if ty == T.STRING:
        return {"type": int(ty), "value": bytes(parts[i + 1]).decode("utf-8")}, i + 2
    if ty == T.ARRAY:
        elem = T(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(n):
            item, i = value(parts, i, elem)
            items.append(item)
        return {"type": int(ty), "elem": int(elem), "items": items}, i
    part = parts[i]
    if ty in FLOATS:
        return {"type": int(ty), "bits": int(part.view(FLOATS[ty])[0])}, i + 1
    if ty == T.BOOL:
        return {"type": int(ty), "value": bool(part[0])}, i + 1
    return {"type": int(ty), "value": int(part[0])}, i + 1


def dump(path):
    r = gguf.GGUFReader(path)
    kv = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        # parts: key length, key bytes, value type, then the value's parts.
        v, end = value(field.parts, 3, T(int(field.parts[2][0])))
        assert end == len(field.parts), key
        kv.append([key, v])
    tensors = []
    for t in r.tensors:
        data = np.ascontiguousarray(t.data).tobytes()
        assert len(data) == t.n_bytes, t.name
        info = {
            "name": t.name,
            "type": int(t.tensor_type),
            "ne": [int(d) for d in t.shape],
            "start": int(t.data_offset),
            "bytes": int(t.n_bytes),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            info["shape"] = list(t.data.shape)
        tensors.append(info)
    version = r.fields["GGUF.version"]
    return {
        "version": int(version.parts[-1][0]),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "kv": kv,
        "tensors": tensors,
    }


def write(path):
    w = gguf.GGUFWriter(path, arch="llama")  # adds general.architecture
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -120)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float32("t.f32", -1.5e-7)
    w.add_float64("t.f64", 1e300)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.string", "llama 🦙 é")
    w.add_string("t.empty_string", "")
    w.add_array("t.strings", ["a", "", "ü"])
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.5, -0.0, 3.25])
    w.add_array("t.bools", [True, False])
    w.add_key_value("t.u64s", [0, 2**64 - 1], T.ARRAY, sub_type=T.UINT64)
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_array("t.nested_strings", [["x"], ["y", "z"]])
    rng = np.random.default_rng(7)
    w.add_tensor("w.f32", rng.standard_normal((5, 3)).astype(np.float32))
    w.add_tensor("w.f16", rng.standard_normal(7).astype(np.float16))
    bf16 = rng.integers(0, 256, size=(2, 8), dtype=np.uint8)  # 2 rows of 4 bf16
    w.add_tensor("w.bf16", bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
    q8 = rng.integers(0, 256, size=(3, 2 * 34), dtype=np.uint8)  # 3 rows of 64
    q8[:, 0:2] = 0x3C  # finite fp16 scales
    w.add_tensor("w.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)  # one 256-element row
    w.add_tensor("w.q4_k", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        write(path)
    elif mode != "dump":
        sys.exit(f"unknown mode {mode}")
    print(json.dumps(dump(path)))
