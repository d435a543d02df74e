"""Runs .tflite models in LiteRT (ai-edge-litert), many per process, since
importing LiteRT and numpy costs more than running a small model.

    litert_run.py run JOBS.json RESULTS.jsonl
    litert_run.py describe OUT.json MODEL.tflite ...

`run`: JOBS.json is a list of jobs

    {"model": "m.tflite", "inputs": {"name": "x.npy", ...},
     "out": "o.npz", "resolvers": ["ref", "default"]}

For every job and resolver the model is loaded afresh with that op resolver
("ref": the builtin reference kernels, OpResolverType.BUILTIN_REF;
"default": the default resolver, which applies the XNNPACK delegate), run
once, and its outputs added to OUT as `<resolver>/<output name>`. A model
with a `serving_default` signature takes its inputs and names its outputs
by the signature's names; one without takes them by the names of its
subgraph input and output tensors. OUT is rewritten after every resolver,
so it holds what finished even if a later resolver crashes the process.

Failures (load, prepare, invoke, bad inputs) are recorded and the batch
goes on. RESULTS.jsonl gets one JSON object per line, flushed at once:

    {"job": I, "resolver": R, "status": "started"}
    {"job": I, "resolver": R, "status": "ok", "outputs": [names],
     "ops": [names of the original ops in execution order],
     "delegated": [indices of the ops a delegate took over]}
    {"job": I, "resolver": R, "status": "error", "error": "..."}

A "started" line without its outcome means the process died in that run
(LiteRT aborting or crashing); the caller resumes with the remaining jobs.
The exit status is 0 whenever the batch ran to its end, failures or not.
With EDGECONV_LITERT_ABORT_ON=PATH in the environment the process aborts
when it is about to load the model at PATH, so tests can check the resume.

Inputs must have the model's declared shape (a -1 of `shape_signature`
takes any size): LiteRT itself would resize an input to whatever it is fed.

`describe`: writes OUT.json, a list with one entry per model:

    {"model": path, "ok": true, "ops": [{"name": "ADD", "inputs": [...],
     "outputs": [...]}, ...], "inputs": [tensor], "outputs": [tensor],
     "signatures": {key: {"inputs": [names], "outputs": [names]}},
     "tensor_count": N, "subgraph_count": N}

where a tensor is {"name", "index", "shape", "shape_signature", "dtype"}
(dtype as numpy names it: "float32", "int8", ...) and ops are those of
subgraph 0 in execution order, as the reference resolver loads them (no
delegate). A model that does not load gives {"model", "ok": false, "error"}.
"""

import json
import os
import sys
import zipfile

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RESOLVERS = {
    "ref": OpResolverType.BUILTIN_REF,
    "default": OpResolverType.AUTO,
}
SIGNATURE = "serving_default"


def load(model, resolver):
    if os.environ.get("EDGECONV_LITERT_ABORT_ON") == model:
        os.abort()
    return Interpreter(model_path=model, experimental_op_resolver_type=RESOLVERS[resolver])


def tensor_json(details):
    return {
        "name": details["name"],
        "index": int(details["index"]),
        "shape": [int(d) for d in details["shape"]],
        "shape_signature": [int(d) for d in details["shape_signature"]],
        "dtype": np.dtype(details["dtype"]).name,
    }


def ops_json(interpreter):
    return [
        {
            "name": op["op_name"],
            "inputs": [int(t) for t in op["inputs"]],
            "outputs": [int(t) for t in op["outputs"]],
        }
        for op in interpreter._get_ops_details()
    ]


def describe(model):
    interpreter = load(model, "ref")
    signatures = interpreter.get_signature_list()
    return {
        "model": model,
        "ok": True,
        "ops": ops_json(interpreter),
        "inputs": [tensor_json(d) for d in interpreter.get_input_details()],
        "outputs": [tensor_json(d) for d in interpreter.get_output_details()],
        "signatures": {k: {"inputs": v["inputs"], "outputs": v["outputs"]} for k, v in signatures.items()},
        "tensor_count": int(interpreter._interpreter.NumTensors(0)),
        "subgraph_count": int(interpreter.num_subgraphs()),
    }


def delegated_ops(ops):
    """Indices of the original ops that delegate nodes replaced.

    Delegation appends one node per delegated partition after the original
    nodes; its inputs are the tensors the partition reads from outside and
    its outputs those it hands back. Walking back from its outputs, stopping
    at its inputs, visits exactly the partition's (live) nodes."""
    originals = [op for op in ops if op["name"] != "DELEGATE"]
    producer = {t: i for i, op in enumerate(originals) for t in op["outputs"]}
    delegated = set()
    for node in ops[len(originals) :]:
        boundary = set(node["inputs"])
        stack = [t for t in node["outputs"]]
        while stack:
            i = producer.get(stack.pop())
            if i is None or i in delegated:
                continue
            delegated.add(i)
            stack.extend(t for t in originals[i]["inputs"] if t >= 0 and t not in boundary)
    return sorted(delegated)


def check_shape(name, details, value):
    declared = [int(d) for d in details["shape_signature"]]
    fits = len(declared) == value.ndim and all(d in (-1, v) for d, v in zip(declared, value.shape))
    if not fits:
        raise ValueError(f"input {name!r} has shape {list(value.shape)}, the model declares {declared}")


def run_one(model, resolver, inputs):
    """Outputs by name, the op names, and the delegated op indices."""
    interpreter = load(model, resolver)
    feeds = {name: np.load(path, allow_pickle=False) for name, path in inputs.items()}
    if SIGNATURE in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(SIGNATURE)
        expected = sorted(runner.get_input_details())
        if sorted(feeds) != expected:
            raise ValueError(f"signature inputs are {expected}, the job gives {sorted(feeds)}")
        for name, details in runner.get_input_details().items():
            check_shape(name, details, feeds[name])
        outputs = runner(**feeds)
    else:
        details = interpreter.get_input_details()
        expected = sorted(d["name"] for d in details)
        if sorted(feeds) != expected:
            raise ValueError(f"no '{SIGNATURE}' signature; input tensors are {expected}, the job gives {sorted(feeds)}")
        for d in details:
            check_shape(d["name"], d, feeds[d["name"]])
            interpreter.resize_tensor_input(d["index"], feeds[d["name"]].shape)
        interpreter.allocate_tensors()
        for d in details:
            interpreter.set_tensor(d["index"], feeds[d["name"]])
        interpreter.invoke()
        outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    ops = ops_json(interpreter)
    originals = [op["name"] for op in ops if op["name"] != "DELEGATE"]
    return outputs, originals, delegated_ops(ops)


def write_npz(path, arrays):
    """Like np.savez, but any name works as a key, and entries carry a fixed date."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


def error_text(e):
    return f"{type(e).__name__}: {e}".strip()


def run_jobs(jobs_path, results_path):
    with open(jobs_path) as f:
        jobs = json.load(f)
    with open(results_path, "w") as results:

        def report(**entry):
            results.write(json.dumps(entry) + "\n")
            results.flush()

        for i, job in enumerate(jobs):
            arrays = {}
            for resolver in job["resolvers"]:
                report(job=i, resolver=resolver, status="started")
                try:
                    if resolver not in RESOLVERS:
                        raise ValueError(f"unknown resolver {resolver!r}; known: {sorted(RESOLVERS)}")
                    outputs, ops, delegated = run_one(job["model"], resolver, job["inputs"])
                    for name, value in outputs.items():
                        arrays[f"{resolver}/{name}"] = value
                    write_npz(job["out"], arrays)
                except Exception as e:  # noqa: BLE001 - every failure is a result
                    report(job=i, resolver=resolver, status="error", error=error_text(e))
                else:
                    report(job=i, resolver=resolver, status="ok", outputs=list(outputs), ops=ops, delegated=delegated)


def describe_models(out_path, models):
    entries = []
    for model in models:
        try:
            entries.append(describe(model))
        except Exception as e:  # noqa: BLE001
            entries.append({"model": model, "ok": False, "error": error_text(e)})
    with open(out_path, "w") as f:
        json.dump(entries, f, indent=1)


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "run":
        run_jobs(args[1], args[2])
    elif len(args) >= 2 and args[0] == "describe":
        describe_models(args[1], args[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
