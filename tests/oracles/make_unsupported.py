"""Writes a small valid ONNX model with one op no TFLite builtin expresses:
x [1, 2, 8, 8] -> LpPool (node 'pool', p=2, 2x2) -> Relu -> y.

    make_unsupported.py OUT.onnx
"""

import sys

import onnx
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
nodes = [
    helper.make_node("LpPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], p=2),
    helper.make_node("Relu", ["p"], ["y"], name="relu"),
]
graph = helper.make_graph(nodes, "lppool", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
onnx.checker.check_model(model, full_check=True)
onnx.save(model, sys.argv[1])
