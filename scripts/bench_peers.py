#!/usr/bin/env python3
"""This project's ThinkingViT 3H->6H beside the CPU inference runtimes a user would deploy it
with: OpenVINO and ONNX Runtime, on the same weights exported to ONNX. scripts/bench_compare.sh
--peers drives it (installs the runtimes, exports, interleaves the runs, prints the table).

  # needs torch and onnx (bench_compare.sh: the torch Python, with the peers venv on PYTHONPATH)
  python3 bench_peers.py export --out DIR [--weights W.safetensors] [--seed 0]
  # needs numpy and openvino / onnxruntime, not torch
  python3 bench_peers.py run --dir DIR --runtime openvino|onnxruntime [--batch 16] [--threads 1]
      [--precision fp32|bf16] [--taus 0] [--stop-shares 0.5,0.875] [--per-batch] [--stream 16]
      [--warmup 2] [--reps 10] [--reference OURS.safetensors] [--info FILE]
  python3 bench_peers.py summary --out CSVDIR --rounds N --stop-shares 0.5,0.875 [--taus 0]

export writes DIR/weights.safetensors (--weights loaded into scripts/bench_torch.py's NestedViT,
or its random weights with alpha 0.5 so that recycling counts; the released key names, which
`thinkingvit` loads), the ONNX graphs (opset 17, dynamic batch): stage0.onnx (images -> logits,
tokens), stage1.onnx (images, tokens -> logits, tokens: the previous stage's normed tokens
recycled as in bench_torch.py) and all.onnx (images -> logits0, logits1), plus
DIR/check_images.safetensors (the images the logits check feeds every implementation) and
PyTorch's fp32 logits for them (torch_logits.npz).

run prints the same CSV rows as `thinkingvit bench --format csv` (bench_common.COLUMNS), one call
per row being a stream of --stream batches cycled from min(4, stream) distinct random ones, as
bench times it; the rows are timed in interleaved rounds (warm-up calls first, then each round
times every row once, the order rotated by one per round). Rows: "stage" s (stage s alone, its
input tokens computed outside the timed region), "elastic" at each tau (tau 0: the all-stage
graph; tau > 0 as below) and at each stop share, then with --per-batch "elastic_per_batch" rows.
Elastic rows are the stage graphs glued with numpy, as a user would: stage 0 on every image, the
top-10 entropy of its logits (float32), stage 1 only on the images with entropy >= tau. "elastic"
regroups as `thinkingvit bench` does: the undecided images of the stream queue up, stage 1 runs
whenever the queue holds a full batch, and the queue drains at the end of the stream;
"elastic_per_batch" runs stage 1 on each batch's undecided images alone. A stop share s sets tau
as bench's --stop-shares does (src/eval/benchmark.cpp, tau_for_share): from the stage-0
entropies of the stream's images, in the run's precision, k = round(s * n), tau midway between
the k-th and (k+1)-th smallest; an image stops when its entropy is below tau.

OpenVINO compiles every graph for static shapes (reshaped to the batch before compiling) and
stage 1 once more at each reduced batch an elastic row needs (the exact number of undecided
images), with INFERENCE_PRECISION_HINT f32 / bf16, INFERENCE_NUM_THREADS, NUM_STREAMS 1 and
PERFORMANCE_HINT LATENCY. ONNX Runtime keeps the dynamic batch, with intra_op_num_threads,
inter_op_num_threads 1, ORT_ENABLE_ALL and sequential execution; it has no bf16 CPU path.
--info writes the properties in effect (read back from the compiled model / session), the kernels
the runtime's optimised graph holds, and, given --reference (`thinkingvit infer` output on
check_images.safetensors), the logits check: per output max |peer - ours| / max |ours|.
"""
import argparse
import csv
import json
import os
import statistics
import struct
import sys
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["mode", "stage", "tau", "reach", "batch", "precision", "img_per_s", "median_ms",
           "min_ms", "max_ms", "device", "threads", "build"]  # = bench_common.COLUMNS
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}  # max |peer - ours| / max |ours|
STAGE_HEADS = [3, 6]
IMAGE, TOKENS, WIDTH0 = 224, 197, 192


def fail(message):
    print(f"bench_peers: {message}", file=sys.stderr)
    sys.exit(1)


# --- safetensors, float32 only, with numpy (the runtimes' venv has no torch) -------------------

def read_f32_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            continue
        begin, end = e["data_offsets"]
        out[name] = np.frombuffer(data, "<f4", (end - begin) // 4, 8 + n + begin).reshape(e["shape"])
    return out


# --- export ----------------------------------------------------------------------------------

def released_name(name):
    """bench_torch.NestedViT's parameter name -> the released (timm) name thinkingvit loads."""
    parts = name.split(".")
    if parts[0] == "patch_embed":
        return "patch_embed.proj." + parts[1]
    if parts[0] == "recycle":
        i = int(parts[1])
        return ("proj_layer" if i == 0 else f"proj_layer{i + 1}") + "." + parts[2]
    if parts[0] == "blocks":
        sub = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
        parts[2] = sub.get(parts[2], parts[2])
    return ".".join(parts)


def export(args):
    import torch
    sys.path.insert(0, HERE)
    from bench_torch import NestedViT
    from safetensors_io import write_safetensors
    try:
        import onnx
    except ImportError:
        fail("export needs the onnx package beside torch (bench_compare.sh --peers puts the peers "
             "venv on PYTHONPATH)")
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = NestedViT(STAGE_HEADS).eval().requires_grad_(False)
    names = {released_name(k): k for k in model.state_dict()}
    if args.weights:  # this project's (or the released) ThinkingViT 3H->6H weights
        from safetensors_io import read_safetensors
        given, _ = read_safetensors(args.weights)
        missing = sorted(set(names) - set(given))
        if missing:
            fail(f"{args.weights}: not ThinkingViT 3H->6H weights (missing {', '.join(missing[:3])})")
        model.load_state_dict({names[n]: given[n].float() for n in names}, strict=True)
    else:
        with torch.no_grad():
            for a in model.alpha:
                a.fill_(0.5)  # the released init is 0: recycling would not show in the check
    sd = {n: v.detach().float().contiguous() for n, v in
          ((released_name(k), v) for k, v in model.state_dict().items())}
    write_safetensors(os.path.join(args.out, "weights.safetensors"), sd,
                      {"note": "scripts/bench_peers.py export"})

    with torch.no_grad():
        w = [model.stage_weights(s, contiguous=True) for s in range(len(STAGE_HEADS))]

    class Stage0(torch.nn.Module):
        def forward(self, images):
            tokens, logits = model.forward_stage(w[0], images, None)
            return logits, tokens

    class Stage1(torch.nn.Module):
        def forward(self, images, tokens):
            tokens, logits = model.forward_stage(w[1], images, tokens)
            return logits, tokens

    class All(torch.nn.Module):
        def forward(self, images):
            tokens, logits0 = model.forward_stage(w[0], images, None)
            _, logits1 = model.forward_stage(w[1], images, tokens)
            return logits0, logits1

    x = torch.randn(2, 3, IMAGE, IMAGE)
    t = torch.randn(2, TOKENS, WIDTH0)
    batch = {0: "batch"}
    graphs = [
        ("stage0", Stage0(), (x,), ["images"], ["logits", "tokens_out"]),
        ("stage1", Stage1(), (x, t), ["images", "tokens"], ["logits", "tokens_out"]),
        ("all", All(), (x,), ["images"], ["logits0", "logits1"]),
    ]
    import warnings
    for name, module, inputs, in_names, out_names in graphs:
        path = os.path.join(args.out, name + ".onnx")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, path, opset_version=17, dynamo=False,
                              input_names=in_names, output_names=out_names,
                              dynamic_axes={n: batch for n in in_names + out_names})
        m = onnx.load(path)
        onnx.checker.check_model(m)
        ops = Counter(n.op_type for n in m.graph.node)
        print(f"bench_peers: exported {name}.onnx (opset 17, {len(m.graph.node)} nodes: "
              + ", ".join(f"{k} {v}" for k, v in ops.most_common(8)) + ")", file=sys.stderr)

    g = torch.Generator().manual_seed(args.seed + 1)
    images = torch.randn(args.check_images, 3, IMAGE, IMAGE, generator=g)
    write_safetensors(os.path.join(args.out, "check_images.safetensors"), {"images": images})
    with torch.no_grad():
        tok, l0 = model.forward_stage(w[0], images, None)
        _, l1 = model.forward_stage(w[1], images, tok)
    np.savez(os.path.join(args.out, "torch_logits.npz"), logits0=l0.numpy(), logits1=l1.numpy())
    with open(os.path.join(args.out, "export.json"), "w") as f:
        json.dump({"torch": torch.__version__, "onnx": onnx.__version__, "opset": 17}, f)


# --- the runtimes ------------------------------------------------------------------------------

class OpenVINO:
    name = "OpenVINO"

    def __init__(self, args):
        try:
            import openvino as ov
        except ImportError as e:
            fail(f"cannot import openvino ({e})")
        self.ov, self.core, self.args = ov, ov.Core(), args
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if args.precision == "bf16" else "f32",
                       "INFERENCE_NUM_THREADS": str(args.threads), "NUM_STREAMS": "1",
                       "PERFORMANCE_HINT": "LATENCY"}
        self.models = {g: self.core.read_model(os.path.join(args.dir, g + ".onnx"))
                       for g in ("stage0", "stage1", "all")}
        self.compiled = {}  # (graph, batch) -> (compiled model, infer request)
        self.build = f"OpenVINO {ov.get_version()}"

    def _get(self, graph, n):
        key = (graph, n)
        if key not in self.compiled:
            m = self.models[graph].clone()
            shapes = {"images": [n, 3, IMAGE, IMAGE]}
            if graph == "stage1":
                shapes["tokens"] = [n, TOKENS, WIDTH0]
            m.reshape(shapes)
            c = self.core.compile_model(m, "CPU", self.config)
            self.compiled[key] = (c, c.create_infer_request())
        return self.compiled[key][1]

    def prepare(self, graph, n):
        self._get(graph, n)

    def run(self, graph, images, tokens=None):
        req = self._get(graph, images.shape[0])
        feed = {"images": images} if tokens is None else {"images": images, "tokens": tokens}
        out = req.infer(feed, share_inputs=True, share_outputs=True)
        return [out[o] for o in req.model_outputs]

    def info(self):
        c = self.compiled[("stage1", self.args.batch)][0]
        keys = ["INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS",
                "PERFORMANCE_HINT", "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING",
                "SCHEDULING_CORE_TYPE", "ENABLE_HYPER_THREADING", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"]
        supported = set(str(p) for p in c.get_property("SUPPORTED_PROPERTIES"))
        props = {k: str(c.get_property(k)).replace("<Type: '", "").replace("'>", "")
                 for k in keys if k in supported}
        kernels = {}
        for graph in ("stage0", "stage1", "all"):
            rt = self.compiled[(graph, self.args.batch)][0].get_runtime_model()
            types, precisions, primitives = Counter(), Counter(), Counter()
            for op in rt.get_ordered_ops():
                info = op.get_rt_info()
                t = info["layerType"].astype(str)
                if t in ("Input", "Output", "Const"):
                    continue
                types[t] += 1
                precisions[info["runtimePrecision"].astype(str)] += 1
                primitives[f"{t}:{info['primitiveType'].astype(str)}"] += 1
            kernels[graph] = {"layers": dict(types.most_common()),
                              "runtime_precision": dict(precisions.most_common()),
                              "primitives": dict(primitives.most_common())}
        return {"runtime": self.build, "properties": props, "kernels": kernels}


class OnnxRuntime:
    name = "ONNX Runtime"

    def __init__(self, args):
        try:
            import onnxruntime as ort
        except ImportError as e:
            fail(f"cannot import onnxruntime ({e})")
        if args.precision != "fp32":
            fail("ONNX Runtime has no bf16 CPU path: run it with --precision fp32")
        self.ort, self.args = ort, args
        self.sessions = {}
        for g in ("stage0", "stage1", "all"):
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            if args.info:
                so.optimized_model_filepath = os.path.join(os.path.dirname(args.info) or ".",
                                                           f"ort_optimized_{g}.onnx")
            self.sessions[g] = ort.InferenceSession(os.path.join(args.dir, g + ".onnx"), so,
                                                    providers=["CPUExecutionProvider"])
        self.build = f"ONNX Runtime {ort.__version__}"

    def prepare(self, graph, n):
        pass  # dynamic batch

    def run(self, graph, images, tokens=None):
        feed = {"images": images} if tokens is None else {"images": images, "tokens": tokens}
        return self.sessions[graph].run(None, feed)

    def info(self):
        s = self.sessions["stage1"]
        so = s.get_session_options()
        props = {"providers": ",".join(s.get_providers()),
                 "intra_op_num_threads": so.intra_op_num_threads,
                 "inter_op_num_threads": so.inter_op_num_threads,
                 "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
                 "execution_mode": str(so.execution_mode).split(".")[-1]}
        kernels = {}
        for g in self.sessions:
            path = self.sessions[g].get_session_options().optimized_model_filepath
            try:
                import onnx
                m = onnx.load(path, load_external_data=False)
                kernels[g] = {"layers": dict(Counter(n.op_type for n in m.graph.node).most_common())}
            except Exception as e:  # noqa: BLE001 -- only a report
                kernels[g] = {"error": str(e)}
        return {"runtime": self.build, "properties": props, "kernels": kernels}


# --- the calls -------------------------------------------------------------------------------

def entropy_top10(logits):
    """bench's top-10 rule (src/models/entropy.cpp), float32."""
    x = logits.astype(np.float32, copy=False)
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    top = -np.partition(-p, 9, axis=1)[:, :10]
    top /= top.sum(axis=1, keepdims=True)
    eps = np.finfo(np.float32).eps
    return -(top * np.log(np.clip(top, eps, 1 - eps))).sum(axis=1)


def tau_for_share(entropy, share):
    e = np.sort(entropy.astype(np.float64))
    n = e.size
    k = int(round(share * n))
    if k <= 0:
        return float(e[0])
    if k >= n:
        return float(e[-1] + 1)
    return float(0.5 * (e[k - 1] + e[k]))


class Calls:
    def __init__(self, rt, args, stream):
        self.rt, self.args, self.stream = rt, args, stream
        self.batch = stream[0].shape[0]
        self.images = sum(x.shape[0] for x in stream)
        self.classes = None
        self.distinct = [x for i, x in enumerate(stream) if i < 4]
        rt.prepare("stage0", self.batch)
        rt.prepare("stage1", self.batch)
        rt.prepare("all", self.batch)
        # Copied at once: OpenVINO's outputs are views of its request's buffers.
        outs = [[np.array(o) for o in rt.run("stage0", x)] for x in self.distinct]
        self.tokens0 = [o[1] for o in outs]  # stage 1's input for the stage-1 row
        self.classes = outs[0][0].shape[1]
        self.entropy0 = [entropy_top10(o[0]) for o in outs]

    def stream_entropy(self):
        return np.concatenate([self.entropy0[i % len(self.distinct)] for i in range(len(self.stream))])

    def prepare_tau(self, tau):
        """Compile (OpenVINO) stage 1 at every batch size the elastic rows at tau run."""
        go = [int((h >= tau).sum()) for h in self.entropy0]
        sizes = {g for g in go if g > 0}
        total = sum(go[i % len(go)] for i in range(len(self.stream)))
        if total % self.batch:
            sizes.add(total % self.batch)
        for n in sizes:
            self.rt.prepare("stage1", n)

    def stage(self, s):
        rt = self.rt
        if s == 0:
            return lambda: [rt.run("stage0", x) for x in self.stream]
        toks = [self.tokens0[i % len(self.distinct)] for i in range(len(self.stream))]
        return lambda: [rt.run("stage1", x, t) for x, t in zip(self.stream, toks)]

    def all_stages(self):
        """tau 0: every stage on every image, the all-stage graph."""
        def call():
            logits = np.empty((self.images, self.classes), np.float32)
            start = 0
            for x in self.stream:
                l1 = self.rt.run("all", x)[1]
                logits[start:start + x.shape[0]] = l1
                start += x.shape[0]
            return logits, np.full(self.images, 2), [self.images, self.images]
        return call

    def per_batch(self, tau):
        rt = self.rt

        def call():
            logits = np.empty((self.images, self.classes), np.float32)
            exit_stage = np.zeros(self.images, np.int64)
            reach1, start = 0, 0
            for x in self.stream:
                l0, t0 = rt.run("stage0", x)
                go = entropy_top10(l0) >= tau
                logits[start:start + x.shape[0]] = l0
                idx = np.flatnonzero(go)
                if idx.size:
                    l1 = rt.run("stage1", x[idx], t0[idx])[0]
                    logits[start + idx] = l1
                    exit_stage[start + idx] = 1
                    reach1 += idx.size
                start += x.shape[0]
            return logits, exit_stage, [self.images, reach1]
        return call

    def regrouped(self, tau):
        rt, batch = self.rt, self.batch

        def call():
            logits = np.empty((self.images, self.classes), np.float32)
            exit_stage = np.zeros(self.images, np.int64)
            qx, qt, qi, queued = [], [], [], 0
            reach1 = 0

            def run1(n):
                nonlocal qx, qt, qi, queued, reach1
                xs, ts, ids = np.concatenate(qx), np.concatenate(qt), np.concatenate(qi)
                l1 = rt.run("stage1", xs[:n], ts[:n])[0]
                logits[ids[:n]] = l1
                exit_stage[ids[:n]] = 1
                reach1 += n
                qx, qt, qi, queued = [xs[n:]], [ts[n:]], [ids[n:]], queued - n

            start = 0
            for x in self.stream:
                l0, t0 = rt.run("stage0", x)
                go = entropy_top10(l0) >= tau
                logits[start:start + x.shape[0]] = l0
                idx = np.flatnonzero(go)
                if idx.size:
                    qx.append(x[idx])
                    qt.append(t0[idx])
                    qi.append(start + idx)
                    queued += idx.size
                while queued >= batch:
                    run1(batch)
                start += x.shape[0]
            if queued:
                run1(queued)
            return logits, exit_stage, [self.images, reach1]
        return call


def time_interleaved(calls, warmup, reps):
    """Warm-up calls, then reps rounds timing every call once, the order rotated per round."""
    for fn in calls:
        for _ in range(warmup):
            fn()
    ms = [[] for _ in calls]
    reach = [None] * len(calls)
    for r in range(reps):
        for j in range(len(calls)):
            k = (j + r) % len(calls)
            start = time.perf_counter()
            out = calls[k]()
            ms[k].append(1000.0 * (time.perf_counter() - start))
            reach[k] = out[2] if isinstance(out, tuple) else None
    return [(statistics.median(m), min(m), max(m)) for m in ms], reach


def check(rt, args, calls):
    """Logits of every graph on check_images against ours (`thinkingvit infer`)."""
    ref = read_f32_safetensors(args.reference)
    images = np.ascontiguousarray(read_f32_safetensors(
        os.path.join(args.dir, "check_images.safetensors"))["images"])
    n = images.shape[0]
    for g in ("stage0", "stage1", "all"):
        rt.prepare(g, n)

    def rel(a, b):
        b = np.asarray(b, np.float64)
        return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())

    l0, t0 = (np.array(o) for o in rt.run("stage0", images))
    l1 = np.array(rt.run("stage1", images, t0)[0])
    a0, a1 = (np.array(o) for o in rt.run("all", images))
    result = {"stage0": rel(l0, ref["logits.0"]), "stage1 (its own stage-0 tokens)": rel(l1, ref["logits.1"]),
              "all-stage graph, stage 0": rel(a0, ref["logits.0"]),
              "all-stage graph, stage 1": rel(a1, ref["logits.1"])}
    # The numpy glue: elastic at the share 0.5 of these images, regrouped; each image against
    # our logits of the stage it exited at.
    tau = tau_for_share(entropy_top10(l0), 0.5)
    glue = Calls.__new__(Calls)
    glue.rt, glue.args, glue.stream, glue.batch = rt, args, [images], n
    glue.images, glue.classes = n, l0.shape[1]
    glue.entropy0, glue.distinct = [entropy_top10(l0)], [images]
    glue.prepare_tau(tau)
    logits, exit_stage, _ = glue.regrouped(tau)()
    want = np.where(exit_stage[:, None] == 1, ref["logits.1"], ref["logits.0"])
    result["elastic glue (half stop at stage 0)"] = rel(logits, want)
    torch_path = os.path.join(args.dir, "torch_logits.npz")
    ours_vs_torch = None
    if os.path.exists(torch_path):
        t = np.load(torch_path)
        ours_vs_torch = max(rel(ref["logits.0"], t["logits0"]), rel(ref["logits.1"], t["logits1"]))
    worst = max(result.values())
    return {"max_rel_diff": result, "worst": worst, "tolerance": TOLERANCE[args.precision],
            "ok": worst <= TOLERANCE[args.precision], "images": n,
            "ours_vs_pytorch_fp32": ours_vs_torch}


def run(args):
    args.tau_list = [float(t) for t in args.taus.split(",")] if args.taus else []
    args.share_list = [float(s) for s in args.stop_shares.split(",")] if args.stop_shares else []
    rt = OpenVINO(args) if args.runtime == "openvino" else OnnxRuntime(args)
    rng = np.random.default_rng(args.seed)
    distinct = [rng.standard_normal((args.batch, 3, IMAGE, IMAGE), dtype=np.float32)
                for _ in range(min(4, args.stream))]
    stream = [distinct[i % len(distinct)] for i in range(args.stream)]
    c = Calls(rt, args, stream)
    entropy = c.stream_entropy()
    taus = args.tau_list + [tau_for_share(entropy, s) for s in args.share_list]
    rows = [("stage", 0, "-", c.stage(0)), ("stage", 1, "-", c.stage(1))]
    modes = ["elastic"] + (["elastic_per_batch"] if args.per_batch else [])
    for mode in modes:
        for tau in taus:
            if mode == "elastic" and tau <= 0:
                fn = c.all_stages()
            else:
                c.prepare_tau(tau)
                fn = c.regrouped(tau) if mode == "elastic" else c.per_batch(tau)
            rows.append((mode, "-", tau, fn))
    info = None
    if args.info:
        info = rt.info()
        if args.reference:
            info["check"] = check(rt, args, c)
    timings, reach = time_interleaved([r[3] for r in rows], args.warmup, args.reps)
    w = csv.DictWriter(sys.stdout, COLUMNS)
    w.writeheader()
    for (mode, stage, tau, _), timing, rch in zip(rows, timings, reach):
        if mode == "stage":
            rch = [1.0 if i == stage else 0.0 for i in range(len(STAGE_HEADS))]
        else:
            rch = [r / c.images for r in rch]
        median, low, high = timing
        w.writerow({"mode": mode, "stage": stage, "tau": tau if tau == "-" else f"{tau:.3f}",
                    "reach": "/".join(f"{r:.3f}" for r in rch), "batch": args.batch,
                    "precision": args.precision,
                    "img_per_s": f"{1000.0 * c.images / median:.3f}", "median_ms": f"{median:.3f}",
                    "min_ms": f"{low:.3f}", "max_ms": f"{high:.3f}", "device": "cpu",
                    "threads": args.threads, "build": rt.build})
    if args.info:
        if hasattr(rt, "compiled"):  # OpenVINO: the static shapes compiled
            info["compiled_batches"] = sorted({f"{g}@{n}" for g, n in rt.compiled})
        with open(args.info, "w") as f:
            json.dump(info, f, indent=1)


# --- summary ---------------------------------------------------------------------------------

IMPLS = [("ours", "ours"), ("openvino", "OpenVINO"), ("onnxruntime", "ONNX Runtime")]


def row_names(rows, taus, shares):
    """(key, name) per row; elastic rows come as bench writes them: the taus, then the shares."""
    seen, out = Counter(), []
    for row in rows:
        mode = row["mode"]
        if mode == "stage":
            out.append(((mode, row["stage"]), f"stage {row['stage']} alone"))
            continue
        i = seen[mode]
        seen[mode] += 1
        what = f"tau {taus[i]:g}" if i < len(taus) else f"{100 * shares[i - len(taus)]:g} % stop at stage 0"
        how = "" if mode == "elastic" else ", per batch"
        out.append(((mode, i), f"elastic{how}, {what}"))
    return out


def print_info(paths, precision):
    """Each peer's configuration in effect, its kernels and the logits check; False if it failed."""
    ok = True
    for path in paths:
        with open(path) as f:
            info = json.load(f)
        props = ", ".join(f"{k}={v}" for k, v in info["properties"].items())
        print(f"{info['runtime']}: {props}")
        if "compiled_batches" in info:
            print("  compiled (static shapes, graph@batch): " + ", ".join(info["compiled_batches"]))
        k = info["kernels"].get("stage1", {})
        what = k.get("primitives") or k.get("layers") or k
        print("  stage-1 graph as optimised: " + ", ".join(f"{n} {c}" for n, c in what.items())
              if isinstance(what, dict) else f"  stage-1 graph: {what}")
        c = info.get("check")
        if c:
            verdict = "ok" if c["ok"] else "FAILED"
            print(f"  logits vs ours (`thinkingvit infer`, fp32, {c['images']} images), max |peer - ours|"
                  f" / max |ours|: {c['worst']:.2e} ({verdict}, tolerance {c['tolerance']:g} in "
                  f"{precision}): " + ", ".join(f"{n} {v:.2e}" for n, v in c["max_rel_diff"].items()))
            if c.get("ours_vs_pytorch_fp32") is not None:
                print(f"  ours vs the PyTorch model (fp32): {c['ours_vs_pytorch_fp32']:.2e}")
            ok = ok and c["ok"]
    return ok


def summary(args):
    taus = [float(t) for t in args.taus.split(",")] if args.taus else []
    shares = [float(s) for s in args.stop_shares.split(",")] if args.stop_shares else []
    rate, reach, names, builds = {}, {}, {}, {}
    info = ""
    for impl, _ in IMPLS:
        for r in range(args.rounds):
            path = os.path.join(args.out, f"{impl}.{r}.csv")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                rows = [row for row in csv.DictReader(f) if row["mode"] != "train"]
            for row, (key, name) in zip(rows, row_names(rows, taus, shares)):
                names.setdefault(key, name)
                rate.setdefault((impl, key), []).append(float(row["img_per_s"]))
                reach.setdefault((impl, key), row["reach"])
                builds[impl] = row["build"]
                if impl == "ours":
                    info = (f"{row['device']}, {row['threads']} thread(s), batch {row['batch']}, "
                            f"{row['precision']}")
    peers = [(i, n) for i, n in IMPLS[1:] if i in builds]
    print(f"ThinkingViT 3H->6H, {info}; {args.rounds} interleaved rounds; img/s = median over "
          "rounds; elastic rows: stage 1 runs on the images not stopped (regrouped into full "
          "batches unless per batch)")
    for impl, label in IMPLS:
        if impl in builds:
            print(f"  {label}: {builds[impl]}")
    head = (["row", "reach (ours)"] + [f"{n} img/s" for _, n in IMPLS]
            + ["ours / faster peer (min..max)"])
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * (len(head) - 2))
    for key, name in names.items():
        cells = [name, reach.get(("ours", key), "-")]
        for impl, _ in IMPLS:
            v = rate.get((impl, key))
            cells.append(f"{statistics.median(v):.2f}" if v else "n/a")
        ours = rate.get(("ours", key))
        theirs = [rate.get((i, key)) for i, _ in peers]
        theirs = [t for t in theirs if t]
        if ours and theirs:
            n = min(len(ours), *(len(t) for t in theirs))
            ratios = [ours[r] / max(t[r] for t in theirs) for r in range(n)]
            faster = max(peers, key=lambda p: statistics.median(rate.get((p[0], key)) or [0]))[1]
            cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f}),"
                         f" vs {faster}")
        else:
            cells.append("-")
        print("| " + " | ".join(cells) + " |")
    mismatched = [names[k] for k in names
                  for i, _ in peers if (i, k) in reach and ("ours", k) in reach
                  and k[0] != "stage" and reach[(i, k)] != reach[("ours", k)]]
    if mismatched:
        print("reach differs from ours (the peers' own stage-0 entropies set their tau): "
              + "; ".join(f"{names[k]}: " + ", ".join(f"{n} {reach[(i, k)]}" for i, n in peers
                                                      if (i, k) in reach)
                          for k in dict.fromkeys(k for k in names if names[k] in mismatched)))
    if args.info and not print_info(args.info, info.rsplit(", ", 1)[-1]):
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="weights, ONNX graphs and check images (needs torch, onnx)")
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--weights", help="3H->6H safetensors (released key names); default: random")
    e.add_argument("--check-images", type=int, default=16)
    r = sub.add_parser("run", help="time one runtime (needs numpy and the runtime)")
    r.add_argument("--dir", required=True, help="the export folder")
    r.add_argument("--runtime", choices=["openvino", "onnxruntime"], required=True)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    r.add_argument("--taus", default="0")
    r.add_argument("--stop-shares", default="0.5,0.875")
    r.add_argument("--per-batch", action="store_true")
    r.add_argument("--stream", type=int, default=16)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--reps", type=int, default=10)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--reference", help="`thinkingvit infer` output on check_images.safetensors")
    r.add_argument("--info", help="write the configuration in effect (and the check) here")
    s = sub.add_parser("summary", help="the Markdown table from the rounds' CSVs")
    s.add_argument("--out", required=True)
    s.add_argument("--rounds", type=int, required=True)
    s.add_argument("--taus", default="0")
    s.add_argument("--stop-shares", default="0.5,0.875")
    s.add_argument("--info", nargs="*", default=[], help="the peers' --info files")
    args = p.parse_args()
    if args.cmd == "export":
        export(args)
    elif args.cmd == "run":
        if min(args.batch, args.threads, args.stream, args.reps) < 1 or args.warmup < 0:
            fail("--batch, --threads, --stream and --reps must be >= 1, --warmup >= 0")
        run(args)
    else:
        summary(args)


if __name__ == "__main__":
    main()
