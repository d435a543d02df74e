"""Writes the ONNX backend node tests of the installed onnx package, laid out
as in the onnx repository's onnx/backend/test/data/node:

    OUT_DIR/<test_name>/model.onnx
    OUT_DIR/<test_name>/test_data_set_0/input_<i>.pb, output_<i>.pb   (TensorProto)

Tests whose graph inputs or outputs are sequences, optionals or maps are not
written; their names go to OUT_DIR/skipped.txt. OUT_DIR/COMPLETE, holding the
number of tests written, is written last.
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node


def is_tensor_only(model):
    return all(vi.type.HasField("tensor_type") for vi in [*model.graph.input, *model.graph.output])


def serialize(value, name):
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, name).SerializeToString()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    out = Path(parser.parse_args().out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "COMPLETE").unlink(missing_ok=True)

    # Several cases draw unseeded random inputs; seed so reruns write the same bytes.
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cases that overflow or divide by zero on purpose
        cases = node.collect_testcases()

    written, skipped = 0, []
    for case in cases:
        if not is_tensor_only(case.model):
            skipped.append(case.name)
            continue
        case_dir = out / case.name
        case_dir.mkdir(exist_ok=True)
        (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data_dir = case_dir / f"test_data_set_{i}"
            data_dir.mkdir(exist_ok=True)
            for j, value in enumerate(inputs):
                (data_dir / f"input_{j}.pb").write_bytes(serialize(value, case.model.graph.input[j].name))
            for j, value in enumerate(outputs):
                (data_dir / f"output_{j}.pb").write_bytes(serialize(value, case.model.graph.output[j].name))
        written += 1

    (out / "skipped.txt").write_text("".join(f"{name}\n" for name in skipped))
    (out / "COMPLETE").write_text(f"{written}\n")
    print(f"{written} node tests written to {out}, {len(skipped)} skipped (see skipped.txt)")


if __name__ == "__main__":
    main()
