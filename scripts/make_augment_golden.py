#!/usr/bin/python3
"""Regenerate tests/fixtures/augment_golden.safetensors: every RandAugment op applied with PIL
exactly as timm's auto_augment.py calls it, for the C++ parity tests of
src/data/rand_augment.cpp.

Writes small deterministic test images and, for every op and a few arguments, PIL's output:

  input.<image>                        U8, H x W x C (C = 3 for RGB, 1 for gray)
  <op>.<image>[.<filter>][.<argument>] U8, the op's output

and, in __metadata__, one entry per output key: "<op> <image> <filter> <argument>" ("-" where
there is none), plus "fill.rgb" / "fill.gray" and the Pillow version. Geometric ops use the
ImageNet-mean fill (124, 116, 104); PIL refuses an RGB fill for a gray image, so gray images
get its L conversion, which is what the C++ side derives from the same RGB fill.

Run (needs python3-pil and python3-torch, e.g. Debian's /usr/bin/python3):

  /usr/bin/python3 scripts/make_augment_golden.py --out tests/fixtures
"""
import argparse
import os

import numpy as np
import PIL
import torch
from PIL import Image, ImageEnhance, ImageOps

from safetensors_io import write_safetensors

FILL_RGB = (124, 116, 104)
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def make_images():
    rs = np.random.RandomState(1234)
    h, w = 17, 23
    y, x = np.mgrid[0:h, 0:w]
    # Channels with different ranges so that autocontrast and equalize have work to do:
    # R in [20, 230], G the full range, B in [60, 190]; noise, a bright square, a dark bar.
    r = 20 + (x * 7 + y * 5) % 211
    g = (x * 11 + rs.randint(0, 40, size=(h, w))) % 256
    g[3:7, 4:9] = 255
    g[12, :] = 0
    b = 60 + ((x - 11) ** 2 + (y - 8) ** 2 + rs.randint(0, 30, size=(h, w))) % 131
    rgb = np.stack([r, g, b], axis=-1).astype(np.uint8)

    gh, gw = 13, 19
    gy, gx = np.mgrid[0:gh, 0:gw]
    gray = (30 + (gx * 9 + gy * 4 + rs.randint(0, 25, size=(gh, gw))) % 191).astype(np.uint8)

    # A square image for the exact quarter turns of Image.rotate.
    sq = rs.randint(0, 256, size=(9, 9, 3)).astype(np.uint8)

    # Few distinct values, one dominant: equalize's table overflows 255 and is clipped.
    spiky = np.full((7, 11), 200, dtype=np.uint8)
    spiky[0, :5] = [10, 40, 40, 90, 120]
    spiky[6, 6:] = [150, 150, 180, 250, 250]
    return {"rgb": rgb, "gray": gray, "sq": sq, "spiky": spiky}


def to_pil(a):
    return Image.fromarray(a, "RGB" if a.ndim == 3 else "L")


def to_tensor(img):
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.copy())


def fill_for(img):
    if img.mode == "RGB":
        return FILL_RGB
    return Image.new("RGB", (1, 1), FILL_RGB).convert("L").getpixel((0, 0))


# The PIL calls of timm/data/auto_augment.py.
def solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    if img.mode == "RGB":
        lut = lut + lut + lut
    return img.point(lut)


def posterize(img, bits):
    return img if bits >= 8 else ImageOps.posterize(img, bits)


def rotate(img, degrees, resample):
    return img.rotate(degrees, resample=resample, fillcolor=fill_for(img))


def affine(img, matrix, resample):
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill_for(img))


PIXEL_OPS = {
    "autocontrast": (lambda im, _: ImageOps.autocontrast(im), [None]),
    "equalize": (lambda im, _: ImageOps.equalize(im), [None]),
    "invert": (lambda im, _: ImageOps.invert(im), [None]),
    "posterize": (posterize, [0, 1, 4]),
    "solarize": (lambda im, t: ImageOps.solarize(im, t), [0, 128, 201]),
    "solarize_add": (solarize_add, [0, 49, 110]),
    "color": (lambda im, f: ImageEnhance.Color(im).enhance(f), [0.1, 0.19, 0.55, 1.73, 1.9]),
    "contrast": (lambda im, f: ImageEnhance.Contrast(im).enhance(f), [0.1, 0.19, 0.55, 1.73, 1.9]),
    "brightness": (lambda im, f: ImageEnhance.Brightness(im).enhance(f), [0.1, 0.19, 0.55, 1.73, 1.9]),
    "sharpness": (lambda im, f: ImageEnhance.Sharpness(im).enhance(f), [0.1, 0.19, 0.55, 1.73, 1.9]),
}

GEOMETRIC_OPS = {
    "rotate": (rotate, [17.5, -27.0, 30.0, 3.2]),
    "shear_x": (lambda im, f, r: affine(im, (1, f, 0, 0, 1, 0), r), [0.27, -0.3, 0.081]),
    "shear_y": (lambda im, f, r: affine(im, (1, 0, 0, f, 1, 0), r), [0.15, -0.27]),
    "translate_x": (lambda im, p, r: affine(im, (1, 0, p, 0, 1, 0), r), [5.0, -7.0, -7.3, 9.315]),
    "translate_y": (lambda im, p, r: affine(im, (1, 0, 0, 0, 1, p), r), [4.0, -3.6, 6.885]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    args = ap.parse_args()

    images = make_images()
    tensors, meta = {}, {}
    for name, a in images.items():
        tensors[f"input.{name}"] = torch.from_numpy(a[:, :, None] if a.ndim == 2 else a)

    def add(key, op, image, filt, arg, out):
        tensors[key] = to_tensor(out)
        meta[key] = f"{op} {image} {filt} {'-' if arg is None else repr(arg)}"

    for image in ("rgb", "gray"):
        src = to_pil(images[image])
        for op, (fn, arg_list) in PIXEL_OPS.items():
            for arg in arg_list:
                key = f"{op}.{image}" + ("" if arg is None else f".{arg!r}")
                add(key, op, image, "-", arg, fn(src, arg))
        for op, (fn, arg_list) in GEOMETRIC_OPS.items():
            for filt, resample in FILTERS.items():
                # Every argument with bicubic (timm/DeiT); the first two with the others.
                for arg in arg_list if filt == "bicubic" else arg_list[:2]:
                    add(f"{op}.{image}.{filt}.{arg!r}", op, image, filt, arg, fn(src, arg, resample))
    # Image.rotate's exact paths: quarter turns on a square image, a half turn on any.
    for arg in (90.0, 180.0, 270.0, -90.0, 45.0):
        add(f"rotate.sq.bicubic.{arg!r}", "rotate", "sq", "bicubic", arg,
            rotate(to_pil(images["sq"]), arg, Image.BICUBIC))
    add("rotate.rgb.bicubic.180.0", "rotate", "rgb", "bicubic", 180.0,
        rotate(to_pil(images["rgb"]), 180.0, Image.BICUBIC))
    for op in ("autocontrast", "equalize"):
        fn = PIXEL_OPS[op][0]
        add(f"{op}.spiky", op, "spiky", "-", None, fn(to_pil(images["spiky"]), None))

    meta["fill.rgb"] = " ".join(str(v) for v in FILL_RGB)
    meta["fill.gray"] = str(fill_for(to_pil(images["gray"])))
    meta["pillow"] = PIL.__version__
    path = os.path.join(args.out, "augment_golden.safetensors")
    write_safetensors(path, tensors, meta)
    print(f"wrote {path}: {len(tensors)} tensors, Pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
