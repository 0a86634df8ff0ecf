#!/usr/bin/python3
"""Regenerate tests/fixtures/resize_golden.safetensors: PIL's img.crop(box).resize(size, filter)
(torchvision's resized_crop: the box is cut out first, so its edges clamp the filter; PIL's own
resize(..., box=...) would read pixels outside it) on small deterministic images, for the
exactness tests of src/data/transforms.cpp (resize_box), the resampling of RandomResizedCrop
and the eval resize.

  input.<image>                          U8, H x W x C (C = 3 for RGB, 1 for gray)
  <image>.<filter>.<w>x<h>.<l>,<t>,<r>,<b> U8, the resized box (integer box corners)

__metadata__ holds one entry per output key: "<image> <filter> <w> <h> <left> <top> <width>
<height>", plus the Pillow version. Run with Debian's Python (python3-pil, python3-torch):

  /usr/bin/python3 scripts/make_resize_golden.py --out tests/fixtures
"""
import argparse
import os

import numpy as np
import PIL
from PIL import Image

from make_augment_golden import to_pil, to_tensor
from safetensors_io import write_safetensors

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def make_images():
    rs = np.random.RandomState(99)
    h, w = 37, 53
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 9 + y * 4) % 256, rs.randint(0, 256, size=(h, w)),
                    128 + 100 * np.sin(x / 5.0 + y / 7.0)], axis=-1).astype(np.uint8)
    gray = ((x * 5 + y * 11) % 200 + rs.randint(0, 50, size=(h, w))).astype(np.uint8)
    # Hard edges: the bicubic overshoot must clip exactly as PIL's does.
    edges = np.where(((x // 4) + (y // 4)) % 2 == 0, 255, 0).astype(np.uint8)
    edges = np.stack([edges, 255 - edges, edges], axis=-1)
    return {"rgb": rgb, "gray": gray, "edges": edges}


# (out w, out h, box as (left, top, width, height) or None for the whole image)
CASES = [
    (20, 14, None),          # downscale both ways (RandomResizedCrop's usual direction)
    (53, 12, None),          # vertical only
    (17, 37, None),          # horizontal only
    (80, 61, None),          # upscale
    (24, 24, (5, 3, 31, 29)),   # a crop box, resized down
    (32, 32, (40, 20, 13, 17)),  # a crop box at the edge, resized up
    (7, 5, (0, 0, 53, 37)),  # a strong reduction: long filters
    (3, 2, (50, 34, 3, 3)),  # a tiny box at the bottom-right corner
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    tensors, metadata = {}, {"pillow": PIL.__version__}
    for name, array in make_images().items():
        tensors[f"input.{name}"] = to_tensor(array)
        img = to_pil(array)
        for filt, pil_filter in FILTERS.items():
            for w, h, box in CASES:
                left, top, bw, bh = box or (0, 0, img.width, img.height)
                key = f"{name}.{filt}.{w}x{h}.{left},{top},{bw},{bh}"
                out = img.crop((left, top, left + bw, top + bh)).resize((w, h), pil_filter)
                tensors[key] = to_tensor(out)
                metadata[key] = f"{name} {filt} {w} {h} {left} {top} {bw} {bh}"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "resize_golden.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
