#!/usr/bin/env python3
"""A strong PyTorch eager implementation of ThinkingViT, written independently of the released
code, timed as `thinkingvit bench` times this project (rows: each stage alone, elastic inference
at tau with real early exit, a training step; see bench_common.py). What makes it strong:
scaled_dot_product_attention, per-stage weights sliced once into contiguous tensors for
inference, only the undecided images run the next stage, fused AdamW where the device has it.
--compile adds torch.compile of the stage forward.

    python3 scripts/bench_torch.py --batch 16 --threads 1 --taus 0,1 --train [--compile]
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as B  # noqa: E402


class NestedViT(nn.Module):
    """DeiT-style ViT whose stage s uses the first heads[s] heads and 64 * heads[s] channels of
    every layer; stage s > 0 adds alpha * Proj(previous stage's final tokens) to its input."""

    def __init__(self, heads, depth=12, head_dim=64, patch=16, image=224, classes=1000, mlp=4):
        super().__init__()
        self.heads, self.head_dim, self.patch, self.mlp = list(heads), head_dim, patch, mlp
        d = head_dim * max(heads)
        n = (image // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n, d) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            b = nn.Module()
            b.norm1, b.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
            b.qkv, b.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            b.fc1, b.fc2 = nn.Linear(d, mlp * d), nn.Linear(mlp * d, d)
            self.blocks.append(b)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)
        self.alpha = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in heads[1:]])
        self.recycle = nn.ModuleList(nn.Linear(h * head_dim, d) for h in heads[:-1])

    def stage_weights(self, s, contiguous):
        """Leading slices of every weight for stage s (views, or contiguous copies)."""
        k, d = self.heads[s] * self.head_dim, self.head_dim * max(self.heads)
        take = (lambda t: t.contiguous()) if contiguous else (lambda t: t)
        w = {"k": k, "h": self.heads[s],
             "patch_w": take(self.patch_embed.weight[:k]), "patch_b": take(self.patch_embed.bias[:k]),
             "cls": take(self.cls_token[..., :k]), "pos": take(self.pos_embed[..., :k]),
             "norm_w": take(self.norm.weight[:k]), "norm_b": take(self.norm.bias[:k]),
             "head_w": take(self.head.weight[:, :k]), "head_b": self.head.bias, "blocks": []}
        for b in self.blocks:
            w["blocks"].append({
                "n1w": take(b.norm1.weight[:k]), "n1b": take(b.norm1.bias[:k]),
                "qkv_w": take(b.qkv.weight.view(3, d, d)[:, :k, :k].reshape(3 * k, k)),
                "qkv_b": take(b.qkv.bias.view(3, d)[:, :k].reshape(3 * k)),
                "proj_w": take(b.proj.weight[:k, :k]), "proj_b": take(b.proj.bias[:k]),
                "n2w": take(b.norm2.weight[:k]), "n2b": take(b.norm2.bias[:k]),
                "fc1_w": take(b.fc1.weight[:self.mlp * k, :k]), "fc1_b": take(b.fc1.bias[:self.mlp * k]),
                "fc2_w": take(b.fc2.weight[:k, :self.mlp * k]), "fc2_b": take(b.fc2.bias[:k])})
        if s > 0:
            w["rec_w"] = take(self.recycle[s - 1].weight[:k])
            w["rec_b"] = take(self.recycle[s - 1].bias[:k])
            w["alpha"] = self.alpha[s - 1]
        return w

    def forward_stage(self, w, x, prev):
        k, h = w["k"], w["h"]
        t = F.conv2d(x, w["patch_w"], w["patch_b"], stride=self.patch).flatten(2).transpose(1, 2)
        t = torch.cat([w["cls"].expand(x.shape[0], -1, -1), t], dim=1) + w["pos"]
        if prev is not None:
            t = t + w["alpha"] * F.linear(prev, w["rec_w"], w["rec_b"])
        bsz, n, _ = t.shape
        for b in w["blocks"]:
            y = F.layer_norm(t, (k,), b["n1w"], b["n1b"], 1e-6)
            q, kk, v = F.linear(y, b["qkv_w"], b["qkv_b"]).view(bsz, n, 3, h, -1).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(bsz, n, k)
            t = t + F.linear(a, b["proj_w"], b["proj_b"])
            y = F.layer_norm(t, (k,), b["n2w"], b["n2b"], 1e-6)
            t = t + F.linear(F.gelu(F.linear(y, b["fc1_w"], b["fc1_b"])), b["fc2_w"], b["fc2_b"])
        t = F.layer_norm(t, (k,), w["norm_w"], w["norm_b"], 1e-6)
        return t, F.linear(t[:, 0], w["head_w"], w["head_b"])


def entropy_top10(logits):
    p = torch.softmax(logits.float(), dim=1).topk(10, dim=1).values
    p = p / p.sum(dim=1, keepdim=True)
    return -(p * p.clamp_min(1e-30).log()).sum(dim=1)


def main():
    p = B.parser(__doc__.split("\n\n")[0])
    p.add_argument("--compile", action="store_true", help="torch.compile the stage forward")
    args = B.setup(p.parse_args())
    model = NestedViT(args.stage_heads, image=args.image_size, classes=args.num_classes).to(args.device)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    forward = torch.compile(model.forward_stage) if args.compile else model.forward_stage
    rows = B.Rows(args, f"PyTorch {torch.__version__} eager" + (" + torch.compile" if args.compile else ""))
    n = len(args.stage_heads)

    model.eval()
    with torch.no_grad(), B.autocast(args):
        weights = [model.stage_weights(s, contiguous=True) for s in range(n)]
        prev = None
        for s in range(n):
            rows.add("stage", B.time_calls(lambda: forward(weights[s], x, prev), args), stage=s)
            prev = forward(weights[s], x, prev)[0]
        for tau in args.tau_list:
            reach = [0] * n

            def elastic():
                logits = torch.empty(args.batch, args.num_classes, device=args.device)
                idx = torch.arange(args.batch, device=args.device)
                images, tokens = x, None
                for s in range(n):
                    reach[s] = idx.numel()
                    tokens, out = forward(weights[s], images, tokens)
                    logits[idx] = out.float()
                    if s + 1 == n:
                        break
                    go_on = entropy_top10(out) >= tau  # stop where entropy < tau
                    idx, images, tokens = idx[go_on], images[go_on], tokens[go_on]
                    if idx.numel() == 0:
                        break
                return logits

            timing = B.time_calls(elastic, args)
            rows.add("elastic", timing, tau=tau, reach=[r / args.batch for r in reach])

    if args.train:
        model.train()
        fused = args.device.type == "cuda" or hasattr(torch._C, "_fused_adamw_")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=fused)
        labels = torch.randint(0, args.num_classes, (args.batch,), device=args.device)

        def step():
            with B.autocast(args):
                tokens, loss = None, 0.0
                for s in range(n):
                    tokens, out = forward(model.stage_weights(s, contiguous=False), x, tokens)
                    loss = loss + F.cross_entropy(out.float(), labels) / n
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rows.add("train", B.time_calls(step, args), reach=[1.0] * n)


if __name__ == "__main__":
    main()
