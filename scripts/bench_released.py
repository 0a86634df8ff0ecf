#!/usr/bin/env python3
"""The authors' released ThinkingViT code (a checkout of ds-kiel/ThinkingViT at PATH, with its
vendored timm), timed as `thinkingvit bench` times this project: each stage alone, elastic
inference at tau (the released code computes every stage and selects afterwards) and a training
step (every stage, 1/n-weighted cross-entropy as its train.py, AdamW as timm creates it).
With --swin VARIANT, its ThinkingViT on Swin (swin_transformer.py; two head rounds, 0.5 / 0.5
loss weights as its train_swin.py, the same mean) instead. Random weights and inputs; CSV rows on stdout (see
bench_common.py).

    python3 scripts/bench_released.py /path/to/ThinkingViT --batch 16 --threads 1 --taus 0,1 --train
    python3 scripts/bench_released.py /path/to/ThinkingViT --swin swin_tiny_patch4_window7_224 ...

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
    p.add_argument("--swin", choices=sorted(SWIN_ROUNDS),
                   help="time its ThinkingViT on this Swin instead (--stages is then ignored)")
    args = B.setup(p.parse_args())
    sys.path.insert(0, os.path.abspath(args.path))
    from timm.models import create_model  # the released code's vendored timm

    if args.swin:
        args.stage_heads = [r[0] for r in SWIN_ROUNDS[args.swin]]
        return swin(args, create_model)
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

    time_rows(args, model, rows, stage, len(stages),
              elastic=lambda tau: model(x, threshold=tau, thinking_stages=stages),
              forward_train=lambda: model(x, thinking_stages=stages))


def time_rows(args, model, rows, stage, n, elastic, forward_train):
    """The rows of either released model: each stage alone (stage(s, prev) -> tokens), elastic
    at each tau (elastic(tau); the released code computes every stage and selects afterwards,
    so every stage is reached) and, with --train, one step of AdamW on the mean of the stages'
    cross-entropies (forward_train() -> per-stage logits), as both released training scripts
    weight them."""
    with torch.no_grad(), B.autocast(args):
        prev = None
        for s in range(n):
            rows.add("stage", B.time_calls(lambda: stage(s, prev), args), stage=s)
            prev = stage(s, prev)
        for tau in args.tau_list:
            rows.add("elastic", B.time_calls(lambda: elastic(tau), args), tau=tau,
                     reach=[1.0] * n)

    if args.train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        labels = torch.randint(0, args.num_classes, (args.batch,), device=args.device)

        def step():
            with B.autocast(args):
                outputs = forward_train()
                loss = sum(F.cross_entropy(o, labels) for o in outputs) / len(outputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rows.add("train", B.time_calls(step, args), reach=[1.0] * n)


# The head rounds of this project's presets thinkingvit_swin_t / _s / _b (the released ones).
SWIN_ROUNDS = {
    "swin_tiny_patch4_window7_224": ((3, 3, 6, 12), (3, 6, 12, 24)),
    "swin_small_patch4_window7_224": ((3, 3, 6, 12), (3, 6, 12, 24)),
    "swin_base_patch4_window7_224": ((4, 4, 8, 16), (4, 8, 16, 32)),
}


def swin(args, create_model):
    rounds = SWIN_ROUNDS[args.swin]
    if args.precision == "bf16":
        # Its entropy() builds a Categorical of the bf16 top-10 probabilities, whose argument
        # check (on by default) rejects their rounding: the released code cannot run under bf16
        # autocast with it. Turned off, as `python -O` would.
        torch.distributions.Distribution.set_default_validate_args(False)
    model = create_model(args.swin, num_classes=args.num_classes, img_size=args.image_size,
                         head_rounds=rounds).to(args.device)
    model.eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    rows = B.Rows(args, "released ThinkingViT-Swin, PyTorch " + torch.__version__)

    def stage(s, prev):
        tokens, keep = model._forward_round(x, rounds[s], prev_tokens=prev)
        logits = model.forward_head(tokens, keep_dim=keep)
        if s == 0:
            model.entropy(logits)  # the released forward computes it right after round 1
        return tokens

    time_rows(args, model, rows, stage, len(rounds),
              elastic=lambda tau: model(x, threshold=tau), forward_train=lambda: model(x))


if __name__ == "__main__":
    main()
