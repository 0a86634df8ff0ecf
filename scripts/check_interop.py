#!/usr/bin/python3
"""Check that weights used by the C++ `thinkingvit` load into Python with the released
names, and that the C++ per-stage outputs match an independent PyTorch forward.

  /usr/bin/python3 scripts/check_interop.py --weights W.safetensors \\
      --images I.safetensors --outputs O.safetensors --head-dim N --stages 1,2,3 \\
      [--entropy top10|full] [--atol 1e-4]

The weights are loaded with load_state_dict(strict=True) into an nn.Module named like
the released timm-based ThinkingViT (cls_token, pos_embed, patch_embed.proj, blocks.i.*,
norm, head, alpha.i, proj_layer, proj_layer2, ...); width, depth, patch, channels and
classes come from the tensor shapes. Every stage is then run with the maths of
scripts/make_golden.py and compared with `logits.{i}` / `entropy.{i}` of O (from
`thinkingvit infer`). Exit status: 0 when all match within atol, 1 otherwise.
"""
import argparse
import sys

import torch
from torch import nn

from make_golden import entropy_full, entropy_top10, stage_forward
from safetensors_io import read_safetensors


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class Block(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)


class PatchEmbed(nn.Module):
    def __init__(self, chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, stride=patch)


class ThinkingViT(nn.Module):
    """Parameter layout of the released ThinkingViT (timm VisionTransformer + recycling)."""

    def __init__(self, img, patch, chans, dim, depth, hidden, classes, widths):
        super().__init__()
        self.patch_embed = PatchEmbed(chans, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        self.alpha = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in widths[:-1])
        for s, width in enumerate(widths[:-1], start=1):  # proj_layer, proj_layer2, ...
            setattr(self, "proj_layer" if s == 1 else f"proj_layer{s}", nn.Linear(width, dim))


def build_model(weights, images, head_dim, stages):
    """Deduce the architecture from the tensors and load them with strict=True."""
    dim, chans, patch, _ = weights["patch_embed.proj.weight"].shape
    depth = sum(1 for k in weights if k.startswith("blocks.") and k.endswith(".norm1.weight"))
    hidden = weights["blocks.0.mlp.fc1.weight"].shape[0]
    classes = weights["head.weight"].shape[0]
    img = images.shape[-1]
    if head_dim * max(stages) != dim:
        raise ValueError(f"head dim {head_dim} x {max(stages)} heads != width {dim}")
    print(f"architecture: image {img}, patch {patch}, channels {chans}, width {dim}, "
          f"depth {depth}, mlp {hidden}, classes {classes}, stages {stages}")
    model = ThinkingViT(img, patch, chans, dim, depth, hidden, classes,
                        [head_dim * h for h in stages])
    model.load_state_dict(weights, strict=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True, help="safetensors file with 'images'")
    ap.add_argument("--outputs", required=True, help="output of `thinkingvit infer`")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--stages", required=True, help="heads per stage, e.g. 3,6")
    ap.add_argument("--entropy", choices=["top10", "full"], default="top10")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        stages = [int(h) for h in args.stages.split(",")]
        weights, _ = read_safetensors(args.weights)
        images = read_safetensors(args.images)[0]["images"].float()
        outputs, _ = read_safetensors(args.outputs)
        model = build_model(weights, images, args.head_dim, stages)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(f"loaded {len(weights)} tensors with load_state_dict(strict=True)")

    w = {k: v.detach() for k, v in model.state_dict().items()}
    entropy = entropy_top10 if args.entropy == "top10" else entropy_full
    ok, z = True, None
    with torch.no_grad():
        for s in range(len(stages)):
            z, logits = stage_forward(images, w, s, z, stages=stages, hd=args.head_dim)
            for name, ref in ((f"logits.{s}", logits), (f"entropy.{s}", entropy(logits))):
                got = outputs.get(name)
                if got is None or got.shape != ref.shape:
                    print(f"{name}: missing or shape {None if got is None else list(got.shape)}"
                          f" != {list(ref.shape)}")
                    ok = False
                    continue
                diff = (got.float() - ref).abs().max().item()
                ok &= diff <= args.atol
                print(f"{name}: max |diff| = {diff:.3g}"
                      f"{'' if diff <= args.atol else f'  > atol {args.atol}'}")
    print("MATCH" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
