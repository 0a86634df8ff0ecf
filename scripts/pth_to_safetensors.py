#!/usr/bin/python3
"""Convert a PyTorch pickle checkpoint (.pth / .pth.tar) into a flat safetensors file.

  /usr/bin/python3 scripts/pth_to_safetensors.py IN.pth OUT.safetensors
        [--key NAME] [--strip-prefix PREFIX]

Accepts Facebook's DeiT files (weights under 'model'), ThinkingViT/timm training
checkpoints ('state_dict', 'state_dict_ema', pickled argparse args, ...) and plain
state dicts. The key names are kept; floating tensors are written as contiguous
float32, others (int64, ...) keep their dtype. The output is written atomically.

  --key NAME            the entry holding the weights (default: 'state_dict_ema' if
                        present, else 'model', else 'state_dict', else the file itself)
  --strip-prefix P      remove P from the start of every key that has it (default:
                        'module.' when every key has it; '' disables stripping)

Errors are printed one per line on stderr, with exit status 1.
"""
import argparse
import os
import sys

import torch

from safetensors_io import write_safetensors

DEFAULT_KEYS = ("state_dict_ema", "model", "state_dict")


class InputError(Exception):
    pass


def select_weights(ckpt, key):
    """Return (entry name or None, the dict of weights) chosen from a loaded checkpoint."""
    if not isinstance(ckpt, dict):
        raise InputError(f"checkpoint holds a {type(ckpt).__name__}, not a dict")
    if key is not None:
        if key not in ckpt:
            raise InputError(f"key '{key}' not found; available keys: "
                             + ", ".join(map(str, ckpt)))
        return key, ckpt[key]
    for k in DEFAULT_KEYS:
        if isinstance(ckpt.get(k), dict):
            return k, ckpt[k]
    return None, ckpt


def convert(ckpt, key, strip_prefix):
    """Return (entry, prefix stripped, {name: tensor}) ready to write."""
    entry, sd = select_weights(ckpt, key)
    where = f"entry '{entry}'" if entry is not None else "the checkpoint"
    if not isinstance(sd, dict):
        raise InputError(f"{where} holds a {type(sd).__name__}, not a dict of tensors")
    bad = [str(k) for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise InputError(f"{where} is not a flat dict of tensors (e.g. '{bad[0]}'); "
                         f"choose the weights with --key; keys: " + ", ".join(map(str, sd)))
    if not sd:
        raise InputError(f"no tensors found in {where}")
    if strip_prefix is None:
        strip_prefix = "module." if all(k.startswith("module.") for k in sd) else ""
    out = {}
    for name, t in sd.items():
        if strip_prefix and name.startswith(strip_prefix):
            name = name[len(strip_prefix):]
        if name in out:
            raise InputError(f"duplicate key '{name}' after stripping '{strip_prefix}'")
        if t.is_complex() or t.is_sparse or t.is_quantized:
            raise InputError(f"tensor '{name}' has an unsupported layout/dtype {t.dtype}")
        t = t.detach().cpu()
        out[name] = (t.float() if t.is_floating_point() else t).contiguous()
    return entry, strip_prefix, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help=".pth / .pth.tar file written by torch.save")
    ap.add_argument("output", help="safetensors file to write")
    ap.add_argument("--key", help="entry holding the weights")
    ap.add_argument("--strip-prefix", help="key prefix to remove")
    args = ap.parse_args()
    try:
        if not os.path.isfile(args.input):
            raise InputError(f"no such file: {args.input}")
        try:
            # Weights only (torch >= 2.6's default): tensors and plain containers, plus the
            # argparse.Namespace of training arguments that timm / ThinkingViT checkpoints carry.
            with torch.serialization.safe_globals([argparse.Namespace]):
                ckpt = torch.load(args.input, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and torch errors alike
            msg = " ".join(str(e).split())
            raise InputError(f"cannot load {args.input}: {type(e).__name__}: {msg}") from None
        entry, prefix, tensors = convert(ckpt, args.key, args.strip_prefix)
        meta = {"format": "pt", "source": os.path.basename(args.input)}
        if entry is not None:
            meta["entry"] = entry
        write_safetensors(args.output, tensors, meta)
    except (InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(tensors)} tensors to {args.output} "
          f"(entry: {entry or '<top level>'}, stripped: '{prefix}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
