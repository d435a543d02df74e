"""Compares two GGUF files tensor by tensor with gguf-py.

    python3 gguf_compare.py A.gguf B.gguf

prints JSON {"tensors", "same_names", "types_equal", "bytes_equal",
"type_mismatches": [[name, typeA, typeB], ...], "types": {name: typeA}}.
"""

import json
import sys

import gguf

a, b = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
ta = {t.name: t for t in a.tensors}
tb = {t.name: t for t in b.tensors}
common = sorted(set(ta) & set(tb))
print(json.dumps({
    "tensors": len(ta),
    "same_names": set(ta) == set(tb),
    "types_equal": sum(ta[n].tensor_type == tb[n].tensor_type for n in common),
    "bytes_equal": sum(
        ta[n].tensor_type == tb[n].tensor_type and bytes(ta[n].data) == bytes(tb[n].data) for n in common
    ),
    "type_mismatches": [
        [n, ta[n].tensor_type.name, tb[n].tensor_type.name] for n in common if ta[n].tensor_type != tb[n].tensor_type
    ],
    "types": {n: ta[n].tensor_type.name for n in common},
}))
