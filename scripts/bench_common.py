"""Shared by scripts/bench_released.py and scripts/bench_torch.py: the options of
`thinkingvit bench`, the same timing (warm-up, then the median, min and max of the repetitions,
synchronised around each call) and the same CSV rows, so that scripts/bench_compare.sh can put
them side by side.

Rows: "stage" (stage s alone, its input tokens computed outside the timed region), "elastic"
(thresholded inference at tau, as the implementation does it) and "train" (one training step of
every stage: forward, the summed cross-entropy, backward, AdamW).
"""
import argparse
import contextlib
import csv
import statistics
import sys
import time

import torch

COLUMNS = ["mode", "stage", "tau", "reach", "batch", "precision", "img_per_s", "median_ms",
           "min_ms", "max_ms", "device", "threads", "build"]


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--stages", default="3,6", help="heads per stage (ThinkingViT 3H->6H: 3,6)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--taus", default="", help="elastic rows, e.g. 0,1.0 (none: no elastic rows)")
    p.add_argument("--train", action="store_true", help="add the training-step row")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.stage_heads = [int(s) for s in args.stages.split(",")]
    args.tau_list = [float(t) for t in args.taus.split(",")] if args.taus else []
    args.device = torch.device(args.device)
    return args


def autocast(args):
    if args.precision == "bf16":
        return torch.autocast(device_type=args.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, args):
    for _ in range(args.warmup):
        fn()
    ms = []
    for _ in range(args.reps):
        sync(args.device)
        start = time.perf_counter()
        fn()
        sync(args.device)
        ms.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(ms), min(ms), max(ms)


class Rows:
    def __init__(self, args, build):
        self.args, self.build = args, build
        self.writer = csv.DictWriter(sys.stdout, COLUMNS)
        self.writer.writeheader()

    def add(self, mode, timing, stage="-", tau="-", reach=None):
        median, low, high = timing
        n = len(self.args.stage_heads)
        reach = reach if reach is not None else [1.0 if i == stage else 0.0 for i in range(n)]
        device = self.args.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        self.writer.writerow({
            "mode": mode, "stage": stage, "tau": tau,
            "reach": "/".join(f"{r:.3f}" for r in reach), "batch": self.args.batch,
            "precision": self.args.precision, "img_per_s": f"{1000.0 * self.args.batch / median:.3f}",
            "median_ms": f"{median:.3f}", "min_ms": f"{low:.3f}", "max_ms": f"{high:.3f}",
            "device": name, "threads": torch.get_num_threads(), "build": self.build})
        sys.stdout.flush()
