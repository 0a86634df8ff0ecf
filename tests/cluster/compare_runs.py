#!/usr/bin/env python3
"""Compares the last checkpoints of two run folders tensor by tensor, bit for bit.

    compare_runs.py RUN_A RUN_B

Every tensor of model.safetensors and ema.safetensors (dtype, shape and bytes), the optimizer
state of optimizer.pt, and every value of state.json (epoch, batch, step, best top-1, the
epoch's running totals). There is no RNG state to compare: every random draw is a function of
the seed, epoch, batch and rank. Exit 0 when equal, 1 with one line
per difference otherwise. Run it with a Python that has torch.

optimizer.pt is LibTorch's optimizer archive, and its bytes differ between two processes that
hold the same state: the per-parameter state is keyed by the address of each parameter's
TensorImpl, so the entry names and their order change from process to process. It is read
instead as LibTorch reads it back: param_groups/i lists its parameters' keys in order, and the
state of the j-th parameter of group i (step, exp_avg, exp_avg_sq, max_exp_avg_sq) is compared
with its counterpart, along with each group's options.
"""
import json
import struct
import sys
from pathlib import Path

import torch


def last_checkpoint(run):
    checkpoints = Path(run) / "checkpoints"
    name = (checkpoints / "LAST").read_text().split()[0]
    return checkpoints / name


def safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = (info["dtype"], tuple(info["shape"]), body[begin:end])
    return out


STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
OPTION_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad")


def field(module, key):
    return module._c.getattr(key) if module._c.hasattr(key) else None


def optimizer_state(path):
    """{(group, index, key): value} for the state and {(group, option): value} for the options."""
    root = torch.jit.load(str(path), map_location="cpu")
    groups = int(field(root.param_groups, "param_groups/size").item())
    out = {}
    for g in range(groups):
        group = getattr(root.param_groups, f"param_groups/{g}")
        for key in OPTION_KEYS:
            out[(g, key)] = field(group.options, key)
        for j in range(int(field(group, "params/size").item())):
            state = getattr(root.state, field(group, f"params/{j}"), None)
            for key in STATE_KEYS:
                out[(g, j, key)] = None if state is None else field(state, key)
    return out


def same_value(x, y):
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y))
    return x == y


def main():
    a, b = (last_checkpoint(r) for r in sys.argv[1:3])
    problems = []
    if a.name != b.name:
        problems.append(f"last checkpoints differ: {a.name} vs {b.name}")
    counts = {}
    for file in ("model.safetensors", "ema.safetensors"):
        ta, tb = safetensors(a / file), safetensors(b / file)
        if ta.keys() != tb.keys():
            problems.append(f"{file}: tensor names differ")
        for name in sorted(ta.keys() & tb.keys()):
            if ta[name] != tb[name]:
                problems.append(f"{file}: {name} differs")
        counts[file] = len(ta)
    oa, ob = optimizer_state(a / "optimizer.pt"), optimizer_state(b / "optimizer.pt")
    if oa.keys() != ob.keys():
        problems.append(f"optimizer.pt: the parameter groups differ ({sorted(oa.keys() ^ ob.keys())[:4]})")
    for key in sorted(oa.keys() & ob.keys(), key=str):
        if not same_value(oa[key], ob[key]):
            problems.append(f"optimizer.pt: {'/'.join(map(str, key))} differs")
    if not any(isinstance(v, torch.Tensor) for v in oa.values()):
        problems.append("optimizer.pt: holds no state tensors (read wrongly?)")
    counts["optimizer.pt"] = sum(isinstance(v, torch.Tensor) for v in oa.values())
    sa, sb = (json.loads((c / "state.json").read_text()) for c in (a, b))
    for key in sorted(sa.keys() | sb.keys()):
        if sa.get(key) != sb.get(key):
            problems.append(f"state.json: {key} {sa.get(key)} vs {sb.get(key)}")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"same: {a.name}, " + ", ".join(f"{v} tensors of {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
