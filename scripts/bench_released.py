#!/usr/bin/env python3
"""The authors' released ThinkingViT code (a checkout of ds-kiel/ThinkingViT at PATH, with its
vendored timm), timed as `thinkingvit bench` times this project: each stage alone, elastic
inference at tau (the released code computes every stage and selects afterwards) and a training
step (every stage, 1/n-weighted cross-entropy as its train.py, AdamW as timm creates it).
Random weights and inputs; CSV rows on stdout (see bench_common.py).

    python3 scripts/bench_released.py /path/to/ThinkingViT --batch 16 --threads 1 --taus 0,1 --train

Needs torch plus what the vendored timm imports (torchvision, pillow, pyyaml, safetensors).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as B  # noqa: E402


def main():
    p = B.parser(__doc__.split("\n\n")[0])
    p.add_argument("path", help="checkout of ds-kiel/ThinkingViT")
    args = B.setup(p.parse_args())
    sys.path.insert(0, os.path.abspath(args.path))
    from timm.models import create_model  # the released code's vendored timm

    stages = tuple(args.stage_heads)
    model = create_model("thinkingvit", thinking_stages=stages, num_classes=args.num_classes,
                         img_size=args.image_size).to(args.device)
    model.eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    rows = B.Rows(args, "released ThinkingViT, PyTorch " + torch.__version__)

    def stage(s, prev):
        model.p = model._stage_ratio(stages[s])
        tokens = model.forward_features(x, model.p, prev, stages)
        logits = model.forward_head(tokens)
        if s == 0:
            model.entropy(logits)  # the released forward computes it right after stage 0
        return tokens

    with torch.no_grad(), B.autocast(args):
        prev = None
        for s in range(len(stages)):
            rows.add("stage", B.time_calls(lambda: stage(s, prev), args), stage=s)
            prev = stage(s, prev)
        for tau in args.tau_list:
            out = {}

            def elastic():
                out["mask"] = model(x, threshold=tau, thinking_stages=stages)[1]

            timing = B.time_calls(elastic, args)
            # Every stage ran on every image; the mask says which ones needed the second.
            rows.add("elastic", timing, tau=tau, reach=[1.0] * len(stages))

    if args.train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        labels = torch.randint(0, args.num_classes, (args.batch,), device=args.device)

        def step():
            with B.autocast(args):
                outputs = model(x, thinking_stages=stages)
                loss = sum(F.cross_entropy(o, labels) for o in outputs) / len(outputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rows.add("train", B.time_calls(step, args), reach=[1.0] * len(stages))


if __name__ == "__main__":
    main()
