#!/usr/bin/python3
"""Regenerate the fixtures for the C++ golden tests of ThinkingViT-Swin.

This is an independent plain-PyTorch reference of the ThinkingViT-Swin forward
(the authors' two "head rounds" on one Swin: round 1 runs every stage on the
leading slice of its tensors, round 2 runs the full model with the round-1
tokens recycled into its input).  It is written from a description of the
behaviour of the authors' code (ds-kiel/ThinkingViT 9254c49, their vendored
timm/models/swin_transformer.py), not copied from it, and was cross-checked
against that code (logits within 4e-6, masks / indices / exits exact).
It writes, deterministically:

  <out>/swin_tiny_weights.safetensors  state dict of a tiny ThinkingViT-Swin with
      the key names of the authors' Hugging Face export (timm SwinTransformer
      keys + alpha.0 + proj_layer.*); the non-persistent buffers
      relative_position_index and attn_mask are NOT stored (as in the export).
      Metadata "config" holds the JSON their config.json would hold for this
      model (architecture + num_classes + model_args + pretrained_cfg).
  <out>/swin_tiny_golden.safetensors   images, per-round logits / tokens /
      entropies, elastic outputs for a few thresholds, plus small unit cases
      (shift mask, padded-window block, relative position index, window order).

Tiny config (see TINY below): 16 px images, patch 2 (8x8 grid), 3 stages at
8x8 / 4x4 / 2x2, window 4 (stage 0 shifts by 2 with a real mask; stage 1 has
resolution == window so no shift; stage 2 clamps the window to 2), embed 6,
heads (2, 4, 8) (head_dim 3), head rounds (1, 2, 4) -> (2, 4, 8), token
projector ConvTranspose2d kernel = stride = 8 / 2 = 4, alpha = 0.7, 16 classes.

Run (needs only torch, e.g. the one scripts/setup.sh installs):

  ~/.cache/thinkingvit/torch-2.11.0/bin/python scripts/make_swin_golden.py --out tests/fixtures
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

from safetensors_io import write_safetensors

TINY = dict(
    img_size=16, patch_size=2, in_chans=3, num_classes=16, embed_dim=6,
    depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=4, mlp_ratio=4.0,
    head_rounds=((1, 2, 4), (2, 4, 8)),
)
EPS = 1e-5          # every LayerNorm of the authors' Swin (their LayerNorm class default)
ALPHA = 0.7
BATCH = 6
MASK_FILL = -100.0  # value of the shifted-window attention mask between different regions


# ---------------------------------------------------------------------------------------------
# Geometry helpers (pure functions of the config)
# ---------------------------------------------------------------------------------------------

def geometry(cfg):
    """Per-stage widths, resolutions, (clamped) windows and shifts."""
    L = len(cfg["depths"])
    grid = cfg["img_size"] // cfg["patch_size"]
    dims = [cfg["embed_dim"] * 2 ** i for i in range(L)]
    res = [grid // 2 ** i for i in range(L)]
    win = [min(r, cfg["window_size"]) for r in res]   # window clamped to the resolution
    # odd blocks shift by window // 2, unless the resolution fits in one window
    shift = [0 if r <= w else cfg["window_size"] // 2 for r, w in zip(res, win)]
    head_dim = [d // h for d, h in zip(dims, cfg["num_heads"])]
    return dict(L=L, grid=grid, dims=dims, res=res, win=win, shift=shift, head_dim=head_dim)


def keep_width(dim, heads, max_heads):
    """Leading channels a stage keeps when it runs `heads` of `max_heads` heads."""
    return max(1, int(round(dim * min(1.0, max(1, heads) / max_heads))))


def rel_pos_index(ws):
    """[ws*ws, ws*ws] index into the ((2ws-1)^2, heads) table for query i, key j (row-major)."""
    idx = torch.empty(ws * ws, ws * ws, dtype=torch.int64)
    for i in range(ws * ws):
        yi, xi = divmod(i, ws)
        for j in range(ws * ws):
            yj, xj = divmod(j, ws)
            idx[i, j] = (yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)
    return idx


def to_windows(x, ws):
    """B x H x W x C -> (B * nWh * nWw) x (ws*ws) x C; windows row-major, tokens row-major."""
    B, H, W, C = x.shape
    out = []
    for b in range(B):
        for wy in range(H // ws):
            for wx in range(W // ws):
                out.append(x[b, wy * ws:(wy + 1) * ws, wx * ws:(wx + 1) * ws].reshape(ws * ws, C))
    return torch.stack(out)


def from_windows(win, ws, B, H, W):
    """Inverse of to_windows: (B*nW) x (ws*ws) x C -> B x H x W x C."""
    C = win.shape[-1]
    x = win.new_empty(B, H, W, C)
    n = 0
    for b in range(B):
        for wy in range(H // ws):
            for wx in range(W // ws):
                x[b, wy * ws:(wy + 1) * ws, wx * ws:(wx + 1) * ws] = win[n].reshape(ws, ws, C)
                n += 1
    return x


def shift_mask(H, W, ws, ss):
    """nW x (ws*ws) x (ws*ws) additive mask for a shifted block on an H x W grid.

    The grid is padded to multiples of ws first; each padded axis is cut into
    [0, P-ws), [P-ws, P-ss), [P-ss, P); tokens in different (row band, column band)
    regions get MASK_FILL, same region 0.
    """
    Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws

    def band(c, P):
        return 0 if c < P - ws else (1 if c < P - ss else 2)

    region = torch.tensor([[3 * band(y, Hp) + band(x, Wp) for x in range(Wp)] for y in range(Hp)],
                          dtype=torch.float32)
    r = to_windows(region[None, :, :, None], ws)[..., 0]            # nW x ws*ws
    same = r[:, :, None] == r[:, None, :]
    return torch.where(same, torch.zeros(()), torch.full((), MASK_FILL))


# ---------------------------------------------------------------------------------------------
# The sliced forward (reference)
# ---------------------------------------------------------------------------------------------

def layer_norm(x, w, name, k):
    """LayerNorm over the first k channels with weight/bias[:k]."""
    return F.layer_norm(x[..., :k], (k,), w[name + ".weight"][:k], w[name + ".bias"][:k], EPS)


def window_attention(xw, w, p, kh, hd, ws, mask):
    """xw: nWB x N x k (k = kh*hd). Fused qkv rows [0, 3k) split as (3, kh, hd)."""
    nWB, N, k = xw.shape
    qkv = xw @ w[p + "qkv.weight"][:3 * k, :k].T + w[p + "qkv.bias"][:3 * k]   # nWB x N x 3k
    qkv = qkv.reshape(nWB, N, 3, kh, hd).permute(2, 0, 3, 1, 4)               # 3 x nWB x kh x N x hd
    q, kk, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    a = q @ kk.transpose(-2, -1)                                               # nWB x kh x N x N
    table = w[p + "relative_position_bias_table"]                              # (2ws-1)^2 x heads
    bias = table[rel_pos_index(ws).reshape(-1)].reshape(N, N, -1)[:, :, :kh]   # N x N x kh
    a = a + bias.permute(2, 0, 1)[None]
    if mask is not None:
        nW = mask.shape[0]
        a = (a.reshape(nWB // nW, nW, kh, N, N) + mask[None, :, None]).reshape(nWB, kh, N, N)
    a = a.softmax(dim=-1)
    o = (a @ v).transpose(1, 2).reshape(nWB, N, k)
    return o @ w[p + "proj.weight"][:k, :k].T + w[p + "proj.bias"][:k]


def swin_block(x, w, p, k, kh, hd, ws, ss, hidden_k):
    """x: B x H x W x k. Pre-norm windowed attention (+ shift) and MLP, both residual."""
    B, H, W, _ = x.shape
    h = layer_norm(x, w, p + "norm1", k)
    if ss:
        h = torch.roll(h, shifts=(-ss, -ss), dims=(1, 2))
    Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
    h = F.pad(h, (0, 0, 0, Wp - W, 0, Hp - H))          # zero tokens at the bottom / right
    mask = shift_mask(H, W, ws, ss) if ss else None
    o = window_attention(to_windows(h, ws), w, p + "attn.", kh, hd, ws, mask)
    o = from_windows(o, ws, B, Hp, Wp)[:, :H, :W]
    if ss:
        o = torch.roll(o, shifts=(ss, ss), dims=(1, 2))
    x = x + o
    h = layer_norm(x, w, p + "norm2", k)
    h = F.gelu(h @ w[p + "mlp.fc1.weight"][:hidden_k, :k].T + w[p + "mlp.fc1.bias"][:hidden_k])
    return x + h @ w[p + "mlp.fc2.weight"][:k, :hidden_k].T + w[p + "mlp.fc2.bias"][:k]


def patch_merge(x, w, p, k_in, k_out):
    """B x H x W x C -> B x H/2 x W/2 x k_out, from the first k_in channels.

    Concatenation order per 2x2 cell: (0,0), (1,0), (0,1), (1,1) as (row, col) offsets,
    each k_in wide; LayerNorm over 4*k_in (weight[:4k_in]); reduction weight[:k_out, :4k_in].
    """
    x = x[..., :k_in]
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    x = layer_norm(x, w, p + "norm", 4 * k_in)
    return x @ w[p + "reduction.weight"][:k_out, :4 * k_in].T


def token_projector(z, w, grid):
    """z: B x h x w x Cin (previous round, after the final norm) -> B x grid x grid x Cout."""
    up = w["proj_layer.upsample.weight"]                 # Cin x 1 x s x s (depthwise)
    cin, s = up.shape[0], up.shape[-1]
    assert z.shape[-1] == cin and z.shape[1] * s == grid
    y = F.conv_transpose2d(z.permute(0, 3, 1, 2), up, stride=s, groups=cin)   # B x Cin x grid x grid
    y = F.conv2d(y, w["proj_layer.proj.weight"], w["proj_layer.proj.bias"])   # B x Cout x grid x grid
    return y.permute(0, 2, 3, 1)


def forward_round(images, w, cfg, heads, prev_tokens=None, trace=None):
    """One head round. Returns (tokens after the final norm, B x h x w x k_final; logits)."""
    g = geometry(cfg)
    H = cfg["num_heads"]
    k = [keep_width(g["dims"][i], heads[i], H[i]) for i in range(g["L"])]
    kh = [max(1, min(H[i], int(round(H[i] * min(1.0, max(1, heads[i]) / H[i])))))
          for i in range(g["L"])]
    hidden = [int(g["dims"][i] * cfg["mlp_ratio"]) for i in range(g["L"])]
    # MLP hidden slice: int(hidden * p), p = heads / max_heads (floor, not round)
    hid_k = [max(1, int(hidden[i] * min(1.0, max(1, heads[i]) / H[i]))) for i in range(g["L"])]

    x = F.conv2d(images, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"],
                 stride=cfg["patch_size"]).permute(0, 2, 3, 1)          # B x G x G x D0 (full)
    x = layer_norm(x, w, "patch_embed.norm", g["dims"][0])               # LN over all D0 ...
    x = x[..., :k[0]]                                                    # ... then slice
    if prev_tokens is not None:
        x = x + w["alpha.0"] * token_projector(prev_tokens, w, g["grid"])
    if trace is not None:
        trace["input"] = x
    for i in range(g["L"]):
        if i > 0:
            x = patch_merge(x, w, f"layers.{i}.downsample.", k[i - 1], k[i])
        for j in range(cfg["depths"][i]):
            ss = g["shift"][i] if j % 2 == 1 else 0
            x = swin_block(x, w, f"layers.{i}.blocks.{j}.", k[i], kh[i], g["head_dim"][i],
                           g["win"][i], ss, hid_k[i])
        if trace is not None:
            trace[f"stage{i}"] = x
    tokens = layer_norm(x, w, "norm", k[-1])
    logits = tokens.mean(dim=(1, 2)) @ w["head.fc.weight"][:, :k[-1]].T + w["head.fc.bias"]
    return tokens, logits


def entropy_top10(logits):
    """Exit score of the authors' code: entropy of the renormalised top-10 softmax (fp32)."""
    top = torch.softmax(logits.float(), dim=-1).topk(min(10, logits.shape[-1]), dim=-1).values
    top = top / top.sum(dim=-1, keepdim=True)
    eps = torch.finfo(torch.float32).eps
    h = -(top * torch.log(top.clamp(eps, 1 - eps))).sum(dim=-1)
    ref = torch.distributions.Categorical(probs=top).entropy()
    assert torch.allclose(h, ref, atol=1e-6, rtol=0), (h, ref)
    return h


# ---------------------------------------------------------------------------------------------
# A second, structurally different path for the self-checks: a plain (unsliced) Swin made of
# torch.nn modules and torch's own unfold-free window code.
# ---------------------------------------------------------------------------------------------

class PlainSwin(torch.nn.Module):
    """Ordinary Swin (no slicing) whose state dict uses the same key names."""

    def __init__(self, cfg, dims_override=None):
        super().__init__()
        nn = torch.nn
        self.cfg = cfg
        g = geometry(cfg)
        dims = dims_override or g["dims"]
        self.dims = dims
        self.g = g
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cfg["in_chans"], dims[0], cfg["patch_size"], cfg["patch_size"])
        self.patch_embed.norm = nn.LayerNorm(dims[0], eps=EPS)
        self.layers = nn.ModuleList()
        for i in range(g["L"]):
            st = nn.Module()
            if i > 0:
                st.downsample = nn.Module()
                st.downsample.norm = nn.LayerNorm(4 * dims[i - 1], eps=EPS)
                st.downsample.reduction = nn.Linear(4 * dims[i - 1], dims[i], bias=False)
            st.blocks = nn.ModuleList()
            heads = cfg["num_heads"][i]
            for _ in range(cfg["depths"][i]):
                b = nn.Module()
                b.norm1 = nn.LayerNorm(dims[i], eps=EPS)
                b.attn = nn.Module()
                b.attn.relative_position_bias_table = nn.Parameter(
                    torch.zeros((2 * g["win"][i] - 1) ** 2, heads))
                b.attn.qkv = nn.Linear(dims[i], 3 * dims[i])
                b.attn.proj = nn.Linear(dims[i], dims[i])
                b.norm2 = nn.LayerNorm(dims[i], eps=EPS)
                b.mlp = nn.Module()
                b.mlp.fc1 = nn.Linear(dims[i], int(dims[i] * cfg["mlp_ratio"]))
                b.mlp.fc2 = nn.Linear(int(dims[i] * cfg["mlp_ratio"]), dims[i])
                st.blocks.append(b)
            self.layers.append(st)
        self.norm = nn.LayerNorm(dims[-1], eps=EPS)
        self.head = nn.Module()
        self.head.fc = nn.Linear(dims[-1], cfg["num_classes"])

    def _attn(self, blk, x, heads, ws, ss):
        B, H, W, C = x.shape
        hd = C // heads
        if ss:
            x = x.roll((-ss, -ss), (1, 2))
        Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        # window partition via view/permute (a different route from to_windows' loops)
        xw = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        n = ws * ws
        q, k, v = blk.attn.qkv(xw).view(-1, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        bias = blk.attn.relative_position_bias_table[rel_pos_index(ws).view(-1)].view(n, n, heads)
        a = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(hd) + bias.permute(2, 0, 1)
        if ss:
            m = shift_mask(H, W, ws, ss)
            a = a.view(B, -1, heads, n, n) + m[None, :, None]
            a = a.view(-1, heads, n, n)
        o = torch.einsum("bhij,bhjd->bhid", a.softmax(-1), v).transpose(1, 2).reshape(-1, n, C)
        o = blk.attn.proj(o)
        o = o.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        o = o[:, :H, :W]
        return o.roll((ss, ss), (1, 2)) if ss else o

    def forward(self, images, embed_hook=None):
        g, cfg = self.g, self.cfg
        x = self.patch_embed.proj(images).permute(0, 2, 3, 1)
        x = embed_hook(x) if embed_hook is not None else self.patch_embed.norm(x)
        for i, st in enumerate(self.layers):
            if i > 0:
                B, H, W, C = x.shape
                # 2x2 cell -> channels ordered (row off, col off) = (0,0),(1,0),(0,1),(1,1)
                x = x.view(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).reshape(B, H // 2, W // 2, 4 * C)
                x = st.downsample.reduction(st.downsample.norm(x))
            for j, blk in enumerate(st.blocks):
                ss = g["shift"][i] if j % 2 else 0
                x = x + self._attn(blk, blk.norm1(x), cfg["num_heads"][i], g["win"][i], ss)
                x = x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))
        tokens = self.norm(x)
        return tokens, self.head.fc(tokens.mean((1, 2)))


def sliced_state(w, cfg, heads):
    """Materialise round `heads` as the weights of a smaller standalone Swin (for self-check)."""
    g = geometry(cfg)
    H = cfg["num_heads"]
    k = [keep_width(g["dims"][i], heads[i], H[i]) for i in range(g["L"])]
    out = {}
    for name, t in w.items():
        if name.startswith(("alpha", "proj_layer")):
            continue
        if name.startswith("patch_embed."):
            out[name] = t                       # patch embed stays full (sliced after its norm)
            continue
        if name.startswith("layers."):
            i = int(name.split(".")[1])
            ki = k[i]
            hid = int(int(g["dims"][i] * cfg["mlp_ratio"]) * min(1.0, heads[i] / H[i]))
            if ".downsample.norm." in name:
                out[name] = t[:4 * k[i - 1]]
            elif ".downsample.reduction." in name:
                out[name] = t[:ki, :4 * k[i - 1]]
            elif name.endswith("relative_position_bias_table"):
                out[name] = t[:, :heads[i]]
            elif name.endswith("qkv.weight"):
                out[name] = t[:3 * ki, :ki]     # first 3k rows of the fused weight
            elif name.endswith("qkv.bias"):
                out[name] = t[:3 * ki]
            elif name.endswith("fc1.weight"):
                out[name] = t[:hid, :ki]
            elif name.endswith("fc1.bias"):
                out[name] = t[:hid]
            elif name.endswith("fc2.weight"):
                out[name] = t[:ki, :hid]
            elif t.dim() == 2:                  # attn.proj.weight
                out[name] = t[:ki, :ki]
            else:                               # norms, biases
                out[name] = t[:ki]
            continue
        if name.startswith("norm."):
            out[name] = t[:k[-1]]
        elif name == "head.fc.weight":
            out[name] = t[:, :k[-1]]
        else:
            out[name] = t
    return out, k


# ---------------------------------------------------------------------------------------------
# Weights, config.json, fixtures
# ---------------------------------------------------------------------------------------------

def make_weights(cfg):
    g = geometry(cfg)
    r = lambda *shape, std=0.3: torch.randn(*shape) * std
    w = {}

    def ln(name, n):
        w[name + ".weight"] = 1 + r(n, std=0.1)
        w[name + ".bias"] = r(n, std=0.1)

    d0, P = g["dims"][0], cfg["patch_size"]
    w["patch_embed.proj.weight"] = r(d0, cfg["in_chans"], P, P, std=0.2)
    w["patch_embed.proj.bias"] = r(d0, std=0.1)
    ln("patch_embed.norm", d0)
    for i in range(g["L"]):
        d, heads, hid = g["dims"][i], cfg["num_heads"][i], int(g["dims"][i] * cfg["mlp_ratio"])
        if i > 0:
            dp = g["dims"][i - 1]
            ln(f"layers.{i}.downsample.norm", 4 * dp)
            w[f"layers.{i}.downsample.reduction.weight"] = r(d, 4 * dp, std=0.3)
        for j in range(cfg["depths"][i]):
            p = f"layers.{i}.blocks.{j}."
            ln(p + "norm1", d)
            w[p + "attn.relative_position_bias_table"] = r((2 * g["win"][i] - 1) ** 2, heads, std=0.5)
            w[p + "attn.qkv.weight"] = r(3 * d, d, std=0.4)
            w[p + "attn.qkv.bias"] = r(3 * d, std=0.1)
            w[p + "attn.proj.weight"] = r(d, d)
            w[p + "attn.proj.bias"] = r(d, std=0.1)
            ln(p + "norm2", d)
            w[p + "mlp.fc1.weight"] = r(hid, d)
            w[p + "mlp.fc1.bias"] = r(hid, std=0.1)
            w[p + "mlp.fc2.weight"] = r(d, hid, std=0.2)
            w[p + "mlp.fc2.bias"] = r(d, std=0.1)
    ln("norm", g["dims"][-1])
    w["head.fc.weight"] = r(cfg["num_classes"], g["dims"][-1], std=1.0)
    w["head.fc.bias"] = r(cfg["num_classes"], std=0.1)
    w["alpha.0"] = torch.tensor([ALPHA])
    r1, r2 = cfg["head_rounds"]
    cin = keep_width(g["dims"][-1], r1[-1], cfg["num_heads"][-1])
    cout = keep_width(g["dims"][0], r2[0], cfg["num_heads"][0])
    s = g["grid"] // g["res"][-1]
    w["proj_layer.upsample.weight"] = r(cin, 1, s, s, std=0.5)
    w["proj_layer.proj.weight"] = r(cout, cin, 1, 1, std=0.4)
    w["proj_layer.proj.bias"] = r(cout, std=0.1)
    return {k: v.float().contiguous() for k, v in w.items()}


def hf_config(cfg):
    """The config.json the authors' export (timm save_for_hf) writes for this model.

    Built as create_model('swin_tiny_patch4_window7_224', num_classes=16, **model_args):
    model_args override every field of the preset; pretrained_cfg is the preset's default
    (ms_in1k) cfg, which still says 224 px / 1000 classes -- readers take img_size and
    num_classes from model_args / the top level.
    """
    g = geometry(cfg)
    model_args = {
        "img_size": cfg["img_size"], "patch_size": cfg["patch_size"],
        "window_size": cfg["window_size"], "embed_dim": cfg["embed_dim"],
        "depths": list(cfg["depths"]), "num_heads": list(cfg["num_heads"]),
        "head_rounds": [list(r) for r in cfg["head_rounds"]],
        "build_token_projector": True,
    }
    return {
        "architecture": "swin_tiny_patch4_window7_224",
        "num_classes": cfg["num_classes"],
        "num_features": g["dims"][-1],
        "global_pool": "avg",
        "model_args": model_args,
        "pretrained_cfg": {
            "tag": "ms_in1k", "custom_load": False, "input_size": [3, 224, 224],
            "fixed_input_size": True, "interpolation": "bicubic", "crop_pct": 0.9,
            "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "num_classes": 1000, "pool_size": [7, 7], "first_conv": "patch_embed.proj",
            "classifier": "head.fc", "license": "mit",
        },
    }


def self_checks(w, cfg, images, golden):
    g = geometry(cfg)
    # 1. round 2 with alpha = 0 is a plain full Swin forward
    w0 = dict(w, **{"alpha.0": torch.zeros(1)})
    t2, l2 = forward_round(images, w0, cfg, cfg["head_rounds"][1], golden["tokens.0"].reshape(
        BATCH, g["res"][-1], g["res"][-1], -1))
    plain = PlainSwin(cfg)
    plain.load_state_dict({k: v for k, v in w.items() if not k.startswith(("alpha", "proj_layer"))})
    pt, pl = plain(images)
    assert torch.allclose(l2, pl, atol=1e-4, rtol=1e-4), (l2 - pl).abs().max()
    assert torch.allclose(t2, pt, atol=1e-4, rtol=1e-4), (t2 - pt).abs().max()
    # 2. round 1 is a plain smaller Swin on the materialised leading slices, except that the
    #    patch-embed LayerNorm runs over the full width before its output is sliced
    heads1 = cfg["head_rounds"][0]
    sd, k = sliced_state(w, cfg, heads1)
    cfg1 = dict(cfg, num_heads=tuple(heads1))
    small = PlainSwin(cfg1, dims_override=k)
    small.patch_embed.proj = torch.nn.Conv2d(cfg["in_chans"], g["dims"][0], cfg["patch_size"],
                                             cfg["patch_size"])
    small.patch_embed.norm = torch.nn.LayerNorm(g["dims"][0], eps=EPS)
    small.load_state_dict(sd)
    st, sl = small(images, embed_hook=lambda x: small.patch_embed.norm(x)[..., :k[0]])
    assert torch.allclose(sl, golden["logits.0"], atol=1e-4, rtol=1e-4), (sl - golden["logits.0"]).abs().max()
    # 3. window helpers agree with view/permute partitioning
    x = torch.arange(2 * 8 * 8 * 3, dtype=torch.float32).reshape(2, 8, 8, 3)
    ref = x.view(2, 2, 4, 2, 4, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, 16, 3)
    assert torch.equal(to_windows(x, 4), ref) and torch.equal(from_windows(ref, 4, 2, 8, 8), x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures")
    out = ap.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)

    cfg = TINY
    g = geometry(cfg)
    assert g["shift"][0] > 0 and g["res"][-1] < cfg["window_size"], "tiny config must shift and clamp"
    w = make_weights(cfg)
    images = torch.randn(BATCH, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    r1, r2 = cfg["head_rounds"]
    golden = {"images": images}
    with torch.no_grad():
        tr1, tr2 = {}, {}
        z1, l1 = forward_round(images, w, cfg, r1, trace=tr1)
        z2, l2 = forward_round(images, w, cfg, r2, prev_tokens=z1, trace=tr2)
        e1, e2 = entropy_top10(l1), entropy_top10(l2)
        golden["logits.0"] = l1
        golden["tokens.0"] = z1.reshape(BATCH, -1, z1.shape[-1])        # B x L x C, L row-major
        golden["entropy_top10.0"] = e1
        golden["logits.1"] = l2
        golden["tokens.1"] = z2.reshape(BATCH, -1, z2.shape[-1])
        golden["entropy_top10.1"] = e2
        for i in range(g["L"]):
            golden[f"trace.0.stage{i}"] = tr1[f"stage{i}"]              # B x h x w x k (NHWC)
        golden["trace.1.input"] = tr2["input"]                          # embed + alpha * proj(z1)

        # elastic inference: exit after round 1 iff entropy_1 < tau (strict)
        s = torch.sort(e1).values
        gaps = s[1:] - s[:-1]
        picks = [0, 2, 4]  # thresholds between sorted entropies 1|2, 3|4, 5|6
        assert all(gaps[i] > 1e-3 for i in picks), f"entropies too close: {s.tolist()}"
        taus = [0.0] + [float((s[i] + s[i + 1]) / 2) for i in picks] + [10.0]
        thr = torch.tensor(taus, dtype=torch.float32)
        stop = e1[None, :] < thr[:, None]                               # T x B
        golden["thresholds"] = thr
        golden["exit_round"] = torch.where(stop, 0, 1).to(torch.int64)  # 0 = round 1, 1 = round 2
        golden["elastic_logits"] = torch.where(stop[..., None], l1[None], l2[None])

        # unit cases
        golden["attn_mask.stage0"] = shift_mask(g["res"][0], g["res"][0], g["win"][0], g["shift"][0])
        golden["attn_mask.pad6_w4_s2"] = shift_mask(6, 6, 4, 2)         # 6x6 grid padded to 8x8
        golden["rel_pos_index.w4"] = rel_pos_index(4)
        golden["window_partition.8x8_w4"] = to_windows(
            torch.arange(64, dtype=torch.int64).reshape(1, 8, 8, 1), 4)[..., 0]   # 4 x 16
        # a full-width shifted block whose grid needs padding: layers.0.blocks.1 on 6x6
        pin = torch.randn(2, 6, 6, g["dims"][0])
        golden["pad_block.input"] = pin
        golden["pad_block.output"] = swin_block(pin, w, "layers.0.blocks.1.", g["dims"][0],
                                                cfg["num_heads"][0], g["head_dim"][0], 4, 2,
                                                int(g["dims"][0] * cfg["mlp_ratio"]))
        self_checks(w, cfg, images, golden)

    spread = float(e1.max() - e1.min())
    assert spread >= 0.3, f"round-1 entropy spread too small: {spread:.3f}"
    counts = golden["exit_round"].eq(0).sum(1).tolist()
    assert counts == [0, 1, 3, 5, 6], counts

    os.makedirs(out, exist_ok=True)
    config_json = json.dumps(hf_config(cfg))
    meta = {"description": "tiny ThinkingViT-Swin weights (key names of the authors' HF export; "
                           "no relative_position_index / attn_mask buffers)",
            "config": config_json, "torch_version": torch.__version__}
    write_safetensors(os.path.join(out, "swin_tiny_weights.safetensors"), w, meta)
    meta = {"description": "ThinkingViT-Swin golden outputs of swin_tiny_weights for 6 images "
                           "(scripts/make_swin_golden.py). tokens.* are B x (h*w) x C of the NHWC "
                           "tokens after the final norm; trace.* are NHWC; exit_round 0 = round 1, "
                           "1 = round 2 (exit iff entropy_top10.0 < threshold); pad_block.* is "
                           "layers.0.blocks.1 at full width on a 6x6 grid (window 4, shift 2, "
                           "padded to 8x8).",
            "config": config_json, "torch_version": torch.__version__}
    write_safetensors(os.path.join(out, "swin_tiny_golden.safetensors"), golden, meta)

    n_w = sum(v.numel() for v in w.values())
    print(f"weights: {len(w)} tensors, {n_w} values; round widths {[keep_width(d, h, m) for d, h, m in zip(g['dims'], r1, cfg['num_heads'])]} -> {g['dims']}")
    print(f"round-1 entropy_top10 {[round(v, 4) for v in e1.tolist()]} (ln10={math.log(10):.4f})")
    print(f"round-2 entropy_top10 {[round(v, 4) for v in e2.tolist()]}")
    print(f"thresholds {[round(t, 4) for t in taus]} -> samples exiting after round 1: {counts}")
    for f in ("swin_tiny_weights.safetensors", "swin_tiny_golden.safetensors"):
        print(f"{f}: {os.path.getsize(os.path.join(out, f))} bytes")


if __name__ == "__main__":
    main()
