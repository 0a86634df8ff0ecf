#!/usr/bin/env python3
"""The torchvision / PIL side of the data-pipeline benchmark (scripts/bench_data.sh).

Times, on one thread, decode + the DeiT train transform (RandomResizedCrop bicubic, flip,
RandAugment, ToTensor, Normalize, RandomErasing 0.25) and the eval transform (Resize bicubic to
floor(size / 0.9), CenterCrop, ToTensor, Normalize) over the first N images of an image folder,
and prints one CSV row per pipeline: pipeline,img_per_s_per_core,ms_per_img.

torchvision has no timm policy string; its RandAugment(num_ops=2, magnitude=9) is the closest
(the same 14 + identity ops at magnitude 9 without magnitude noise).
"""
import argparse
import os
import statistics
import time

import torch
from PIL import Image
from torchvision import transforms as T


def files_of(root, limit):
    out = []
    for cls in sorted(os.listdir(root)):
        d = os.path.join(root, cls)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return out[:limit]


def measure(files, fn, reps):
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for f in files:
            fn(f)
        rates.append(len(files) / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = files_of(a.root, a.images)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    bicubic = T.InterpolationMode.BICUBIC
    train = T.Compose([T.RandomResizedCrop(a.size, interpolation=bicubic), T.RandomHorizontalFlip(),
                       T.RandAugment(num_ops=2, magnitude=9), T.ToTensor(), T.Normalize(mean, std),
                       T.RandomErasing(p=0.25, value="random")])
    evaluate = T.Compose([T.Resize(int(a.size / 0.9), interpolation=bicubic), T.CenterCrop(a.size),
                          T.ToTensor(), T.Normalize(mean, std)])

    def load(f):
        with open(f, "rb") as fh:
            img = Image.open(fh)
            return img.convert("RGB")

    print("pipeline,img_per_s_per_core,ms_per_img")
    for name, fn in [("decode only", load), ("train", lambda f: train(load(f))),
                     ("eval", lambda f: evaluate(load(f)))]:
        ips = measure(files, fn, a.reps)
        print(f"{name},{ips:.2f},{1000 / ips:.3f}")


if __name__ == "__main__":
    main()
