#!/usr/bin/python3
"""Regenerate the fixtures for the C++ golden tests of ThinkingViT.

This is an independent plain-PyTorch reference of the ThinkingViT forward
maths (nested ViT stages that use the leading slice of every tensor, plus
Token Recycling between stages).  It writes, deterministically:

  <out>/tiny_weights.safetensors  state dict of a tiny model (timm key names)
  <out>/tiny_golden.safetensors   images, per-stage logits / tokens / entropies

Run (needs only torch, e.g. the one scripts/setup.sh installs):

  ~/.cache/thinkingvit/torch-2.11.0/bin/python scripts/make_golden.py --out tests/fixtures
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

from safetensors_io import write_safetensors

IMG, PATCH, C, K_CLS, HD, DEPTH = 8, 4, 3, 12, 4, 2
STAGES, MLP_RATIO, EPS = [1, 2, 3], 4, 1e-6
D = HD * max(STAGES)
N = (IMG // PATCH) ** 2 + 1
BATCH = 6


def make_weights():
    g = lambda *shape, std=0.3: torch.randn(*shape) * std
    ln = lambda: (1 + g(D, std=0.1), g(D, std=0.1))
    w = {
        "cls_token": g(1, 1, D, std=0.5),
        "pos_embed": g(1, N, D, std=0.5),
        "patch_embed.proj.weight": g(D, C, PATCH, PATCH, std=0.2),
        "patch_embed.proj.bias": g(D, std=0.1),
    }
    for i in range(DEPTH):
        p = f"blocks.{i}."
        w[p + "norm1.weight"], w[p + "norm1.bias"] = ln()
        w[p + "attn.qkv.weight"] = g(3 * D, D)
        w[p + "attn.qkv.bias"] = g(3 * D, std=0.1)
        w[p + "attn.proj.weight"] = g(D, D)
        w[p + "attn.proj.bias"] = g(D, std=0.1)
        w[p + "norm2.weight"], w[p + "norm2.bias"] = ln()
        w[p + "mlp.fc1.weight"] = g(MLP_RATIO * D, D)
        w[p + "mlp.fc1.bias"] = g(MLP_RATIO * D, std=0.1)
        w[p + "mlp.fc2.weight"] = g(D, MLP_RATIO * D, std=0.2)
        w[p + "mlp.fc2.bias"] = g(D, std=0.1)
    w["norm.weight"], w["norm.bias"] = ln()
    w["head.weight"] = g(K_CLS, D, std=1.0)
    w["head.bias"] = g(K_CLS, std=0.1)
    w["alpha.0"] = torch.tensor([0.7])
    w["alpha.1"] = torch.tensor([-0.4])
    w["proj_layer.weight"] = g(D, HD * STAGES[0])
    w["proj_layer.bias"] = g(D, std=0.1)
    w["proj_layer2.weight"] = g(D, HD * STAGES[1])
    w["proj_layer2.bias"] = g(D, std=0.1)
    return {k: v.float().contiguous() for k, v in w.items()}


# The forward maths below takes the architecture from the weights' shapes (so
# scripts/check_interop.py can reuse it for any size); only the head width and
# the stages' head counts are parameters.

def layer_norm(x, w, name, k):
    return F.layer_norm(x, (k,), w[name + ".weight"][:k], w[name + ".bias"][:k], EPS)


def attention(x, w, p, k, heads, hd):
    B, n, _ = x.shape
    d = w[p + "qkv.weight"].shape[1]
    rows = torch.cat([torch.arange(k) + j * d for j in range(3)])
    qkv = x @ w[p + "qkv.weight"][rows, :k].T + w[p + "qkv.bias"][rows]
    q, kk, v = qkv.reshape(B, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ kk.transpose(-2, -1) * hd ** -0.5, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(B, n, k)
    return o @ w[p + "proj.weight"][:k, :k].T + w[p + "proj.bias"][:k]


def mlp(x, w, p, k):
    hidden, d = w[p + "fc1.weight"].shape
    h = hidden * k // d
    x = F.gelu(x @ w[p + "fc1.weight"][:h, :k].T + w[p + "fc1.bias"][:h])
    return x @ w[p + "fc2.weight"][:k, :h].T + w[p + "fc2.bias"][:k]


def stage_forward(images, w, s, z_prev, stages=STAGES, hd=HD):
    """Stage s (0-based) of a ThinkingViT whose stage i uses stages[i] heads of width hd.

    z_prev: the previous stage's normed tokens (None for s = 0). Returns (tokens, logits).
    """
    heads = stages[s]
    k = hd * heads
    B = images.shape[0]
    patch = w["patch_embed.proj.weight"].shape[-1]
    depth = sum(1 for name in w if name.startswith("blocks.") and name.endswith(".norm1.weight"))
    x = F.conv2d(images, w["patch_embed.proj.weight"][:k],
                 w["patch_embed.proj.bias"][:k], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["cls_token"][:, :, :k].expand(B, -1, -1), x], dim=1)
    x = x + w["pos_embed"][:, :, :k]
    if s > 0:  # Token Recycling from the previous stage's normed tokens
        name = "proj_layer" if s == 1 else f"proj_layer{s}"
        rec = z_prev @ w[name + ".weight"].T + w[name + ".bias"]
        x = x + w[f"alpha.{s - 1}"] * rec[..., :k]
    for i in range(depth):
        p = f"blocks.{i}."
        x = x + attention(layer_norm(x, w, p + "norm1", k), w, p + "attn.", k, heads, hd)
        x = x + mlp(layer_norm(x, w, p + "norm2", k), w, p + "mlp.", k)
    tokens = layer_norm(x, w, "norm", k)
    logits = tokens[:, 0] @ w["head.weight"][:, :k].T + w["head.bias"]
    return tokens, logits


def entropy_top10(logits):
    top = torch.softmax(logits.float(), dim=-1).topk(10, dim=-1).values
    top = top / top.sum(dim=-1, keepdim=True)
    eps = torch.finfo(torch.float32).eps
    h = -(top * torch.log(top.clamp(eps, 1 - eps))).sum(dim=-1)
    ref = torch.distributions.Categorical(probs=top).entropy()
    assert torch.allclose(h, ref, atol=1e-6, rtol=0), (h, ref)
    return h


def entropy_full(logits):
    return -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures")
    out = ap.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    w = make_weights()
    images = torch.randn(BATCH, C, IMG, IMG)
    golden = {"images": images}
    z = None
    with torch.no_grad():
        for s in range(len(STAGES)):
            z, logits = stage_forward(images, w, s, z)
            golden[f"logits.{s}"] = logits
            golden[f"tokens.{s}"] = z
            golden[f"entropy_top10.{s}"] = entropy_top10(logits)
            golden[f"entropy_full.{s}"] = entropy_full(logits)

    spread = golden["entropy_top10.0"].max() - golden["entropy_top10.0"].min()
    assert spread >= 0.3, f"stage-0 entropy spread too small: {spread:.3f}"

    os.makedirs(out, exist_ok=True)
    cfg = dict(image_size=IMG, patch_size=PATCH, in_channels=C, num_classes=K_CLS,
               head_dim=HD, depth=DEPTH, stages=STAGES, mlp_ratio=MLP_RATIO, ln_eps=EPS)
    meta = {"description": "tiny ThinkingViT weights for C++ golden tests",
            "config": json.dumps(cfg), "torch_version": torch.__version__}
    write_safetensors(os.path.join(out, "tiny_weights.safetensors"), w, meta)
    meta = {"description": "ThinkingViT golden outputs of tiny_weights for 6 images "
                           "(scripts/make_golden.py)",
            "config": json.dumps(cfg), "torch_version": torch.__version__}
    write_safetensors(os.path.join(out, "tiny_golden.safetensors"), golden, meta)

    for s in range(len(STAGES)):
        t, f = golden[f"entropy_top10.{s}"], golden[f"entropy_full.{s}"]
        print(f"stage {s}: entropy_top10 [{t.min():.4f}, {t.max():.4f}] "
              f"entropy_full [{f.min():.4f}, {f.max():.4f}] (ln10={math.log(10):.4f})")


if __name__ == "__main__":
    main()
