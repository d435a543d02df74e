"""Writes crafted malformed ONNX models, one per file, into OUT_DIR.

Each file is wrong in one way a reader must refuse with a located error:
absurd or negative dims, byte counts that do not match, unknown dtypes, external
data escaping the model's folder, cycles, duplicate or undefined names, missing
opsets. `OUT_DIR/COMPLETE` lists the files, written last.

    python make_hostile.py OUT_DIR
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, initializers=(), opset=17, value_info=()):
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers), value_info=list(value_info))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def relu_model(initializers=(), extra_nodes=()):
    """x -> Add(x, w) -> y, with the given initializers for w."""
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")] + list(extra_nodes)
    return model(nodes, [f32("x", [2])], [f32("y", [2])], initializers)


def raw_tensor(name, dims, data_type=TensorProto.FLOAT, raw=b"\0" * 8):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def external_tensor(name, location, offset=None, length=None):
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend([2])
    t.data_location = TensorProto.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for k, v in entries:
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deeply_nested_model(levels):
    """If nodes nested `levels` deep through graph attributes, encoded by hand:
    the protobuf library itself refuses to build messages this deep."""
    graph = b""
    for _ in range(levels):
        attribute = field(1, b"then_branch") + field(6, graph) + varint(20 << 3) + varint(5)
        node = field(4, b"If") + field(5, attribute)
        graph = field(1, node)
    opset = varint(2 << 3) + varint(17)
    return varint(1 << 3) + varint(8) + field(7, graph) + field(8, opset)


def cases(out_dir):
    """Yields (file name, ModelProto or bytes)."""
    huge = 1 << 62
    for i, dims in enumerate([[huge], [huge, huge], [-1], [-5, 2], [1 << 31, 1 << 31, 4], [0, huge, huge], [2, 3]]):
        # Last one: 6 elements declared, 8 bytes given.
        yield f"dims_{i}.onnx", relu_model([raw_tensor("w", dims)])
    for i, dt in enumerate([0, 99, 1000, -3]):
        yield f"dtype_{i}.onnx", relu_model([raw_tensor("w", [2], data_type=dt)])
    yield "raw_short.onnx", relu_model([raw_tensor("w", [2], raw=b"\0" * 7)])
    yield "raw_long.onnx", relu_model([raw_tensor("w", [2], raw=b"\0" * 9)])
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    t.float_data.extend([1.0, 2.0])
    yield "typed_short.onnx", relu_model([t])
    t = TensorProto(name="w", data_type=TensorProto.INT64, dims=[3])
    t.int64_data.extend([1, 2, 3, 4, 5])
    yield "typed_long.onnx", relu_model([t])

    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    with open(os.path.join(out_dir, "data", "weights.bin"), "wb") as f:
        f.write(np.arange(4, dtype=np.float32).tobytes())
    outside = os.path.join(os.path.dirname(os.path.abspath(out_dir)), "outside.bin")
    with open(outside, "wb") as f:
        f.write(b"\0" * 64)
    link = os.path.join(out_dir, "data", "link.bin")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(outside, link)
    for i, loc in enumerate(
        ["../../etc/passwd", "/etc/passwd", "../outside.bin", "data/../../outside.bin", "data/link.bin", "missing.bin", "", "data"]
    ):
        yield f"external_path_{i}.onnx", relu_model([external_tensor("w", loc)])
    for i, (off, ln) in enumerate([(8, 16), (1 << 40, 8), (0, 1 << 40), (-8, 8), (4, 7)]):
        yield f"external_range_{i}.onnx", relu_model([external_tensor("w", "data/weights.bin", off, ln)])

    cyc = [
        helper.make_node("Relu", ["x2"], ["x1"], name="a"),
        helper.make_node("Relu", ["x1"], ["x2"], name="b"),
        helper.make_node("Add", ["x", "x2"], ["y"], name="c"),
    ]
    yield "cycle.onnx", model(cyc, [f32("x", [2])], [f32("y", [2])])
    self_loop = [helper.make_node("Add", ["x", "y"], ["y"], name="self")]
    yield "self_loop.onnx", model(self_loop, [f32("x", [2])], [f32("y", [2])])
    undefined = [helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")]
    yield "undefined_input.onnx", model(undefined, [f32("x", [2])], [f32("y", [2])])
    dup = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Relu", ["x"], ["y"], name="b")]
    yield "duplicate_output.onnx", model(dup, [f32("x", [2])], [f32("y", [2])])
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    w2 = numpy_helper.from_array(np.ones(3, np.float32), "w")
    yield "duplicate_initializer.onnx", relu_model([w, w2])
    missing_out = [helper.make_node("Relu", ["x"], ["h"], name="a")]
    yield "missing_output.onnx", model(missing_out, [f32("x", [2])], [f32("y", [2])])
    no_opset = relu_model([w])
    del no_opset.opset_import[:]
    yield "no_opset.onnx", no_opset
    yield "opset_0.onnx", model([helper.make_node("Relu", ["x"], ["y"], name="r")], [f32("x", [2])], [f32("y", [2])], opset=0)
    yield "opset_huge.onnx", model([helper.make_node("Relu", ["x"], ["y"], name="r")], [f32("x", [2])], [f32("y", [2])], opset=1 << 40)
    too_few = [helper.make_node("Add", ["x"], ["y"], name="add")]
    yield "arity_low.onnx", model(too_few, [f32("x", [2])], [f32("y", [2])])
    too_many = [helper.make_node("Relu", ["x", "x", "x"], ["y"], name="relu")]
    yield "arity_high.onnx", model(too_many, [f32("x", [2])], [f32("y", [2])])
    bad_attr = [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[5, 0])]
    yield "bad_perm.onnx", model(bad_attr, [f32("x", [2, 3])], [f32("y", [3, 2])])
    bad_axis = [helper.make_node("Softmax", ["x"], ["y"], name="s", axis=9)]
    yield "bad_axis.onnx", model(bad_axis, [f32("x", [2, 3])], [f32("y", [2, 3])])
    bad_conv = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[0, 0])]
    cw = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    yield "conv_zero_stride.onnx", model(bad_conv, [f32("x", [1, 1, 8, 8])], [f32("y", None)], [cw])
    yield "deep_subgraphs.onnx", deeply_nested_model(300)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    names = []
    for name, m in cases(args.out_dir):
        data = m if isinstance(m, bytes) else m.SerializeToString()
        with open(os.path.join(args.out_dir, name), "wb") as f:
            f.write(data)
        names.append(name)
    with open(os.path.join(args.out_dir, "COMPLETE"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"{len(names)} hostile models in {args.out_dir}")


if __name__ == "__main__":
    sys.exit(main())
