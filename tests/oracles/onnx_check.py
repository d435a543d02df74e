"""Checks an ONNX model with onnx.checker (full check: also strict shape and
type inference); exits non-zero with the checker's message on failure.

    onnx_check.py MODEL.onnx

External data next to the model is found through the model's path.
"""

import sys

import onnx


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        onnx.checker.check_model(sys.argv[1], full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        sys.exit(f"{sys.argv[1]}: {e}")
    print(f"{sys.argv[1]}: ok")


if __name__ == "__main__":
    main()
