"""`thinkingvit serve` through a real HTTP client (Python's urllib, not the server's library):
health and metadata, answers equal to `thinkingvit infer` in JSON and in the binary tensor
extension, concurrent clients sharing the stage queues, bad bodies, overload (503 with
Retry-After), and a drain on SIGTERM that answers the request in flight and exits 0.

  test_serve.py BINARY FIXTURES_DIR
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BIN, FIXTURES = sys.argv[1], sys.argv[2]
WEIGHTS = os.path.join(FIXTURES, "tiny_weights.safetensors")
GOLDEN = os.path.join(FIXTURES, "tiny_golden.safetensors")
TAU = 1.3
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def read_safetensors(path):
    """name -> (dtype, shape, flat list of values), for F32 / I64 / I32 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        data = raw[8 + n + begin:8 + n + end]
        code = {"F32": "f", "I64": "q", "I32": "i"}.get(t["dtype"])
        if code:
            out[name] = (t["dtype"], t["shape"], list(struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, path, body=None, headers=None, timeout=30):
    """(status, headers, body bytes) of one HTTP request; errors are answers too."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start(*flags):
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([BIN, "serve", "--weights", WEIGHTS, "--head-dim", "4", "--port", str(port),
                             "--threshold", str(TAU), "--threads", "1"] + list(flags),
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if request(port, "/v2/health/ready", timeout=1)[0] == 200:
                return proc, port, log
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    sys.exit("serve did not become ready:\n" + log.read())


def infer_body(images, shape, binary=False, outputs_binary=False, params=None):
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": shape}]}
    if params:
        body["parameters"] = params
    if outputs_binary:
        body["outputs"] = [{"name": "logits", "parameters": {"binary_data": True}},
                           {"name": "exit_stage", "parameters": {"binary_data": True}}]
    if not binary:
        body["inputs"][0]["data"] = images
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    body["inputs"][0]["parameters"] = {"binary_data_size": 4 * len(images)}
    header = json.dumps(body).encode()
    return header + struct.pack("<%df" % len(images), *images), {
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def answer(status, headers, raw):
    """(logits rows, exit stages) from a JSON or binary response."""
    check(status == 200, "infer status %d: %s" % (status, raw[:300]))
    size = headers.get("Inference-Header-Content-Length")
    head = json.loads(raw[:int(size)] if size else raw)
    out, offset = {}, int(size) if size else 0
    for o in head["outputs"]:
        if "data" in o:
            values = o["data"]
        else:
            n = o["parameters"]["binary_data_size"]
            code = "f" if o["datatype"] == "FP32" else "i"
            values = list(struct.unpack("<%d%s" % (n // 4, code), raw[offset:offset + n]))
            offset += n
        out[o["name"]] = (o["shape"], values)
    k = out["logits"][0][1]
    logits = [out["logits"][1][i * k:(i + 1) * k] for i in range(out["logits"][0][0])]
    return logits, out["exit_stage"][1]


def close(a, b, rel=1e-4):
    scale = max(1.0, max(abs(x) for x in b))
    return max(abs(x - y) for x, y in zip(a, b)) <= rel * scale


# The reference: `thinkingvit infer` on the golden images at the same threshold.
golden = read_safetensors(GOLDEN)
_, shape, pixels = golden["images"]
n, per = shape[0], shape[1] * shape[2] * shape[3]
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "out.safetensors")
    subprocess.run([BIN, "infer", "--weights", WEIGHTS, "--head-dim", "4", "--input", GOLDEN, "--output", out,
                    "--threshold", str(TAU), "--threads", "1"], check=True, capture_output=True)
    ref = read_safetensors(out)
k = ref["logits"][1][1]
ref_logits = [ref["logits"][2][i * k:(i + 1) * k] for i in range(n)]
ref_stage = ref["exit_stage"][2]
check(len(set(ref_stage)) >= 2, "the golden images should exit at different stages")

# Server A: correctness, protocol, concurrency, bad input.
proc, port, log = start("--max-batch", "4", "--max-delay-ms", "300")
status, _, body = request(port, "/v2/health/live")
check(status == 200, "live")
status, _, body = request(port, "/v2/models/thinkingvit")
meta = json.loads(body)
check(status == 200 and meta["inputs"][0]["shape"] == [-1, 3, 8, 8], "metadata inputs: %s" % body)
check(meta["outputs"][0]["shape"] == [-1, 12] and meta["parameters"]["stages"] == ["1", "2", "3"],
      "metadata outputs and stages: %s" % body)
check(meta["parameters"]["threshold"] == TAU, "metadata threshold")

for binary, outputs_binary in [(False, False), (True, True), (True, False)]:
    logits, stages = answer(*request(port, "/v2/models/thinkingvit/infer",
                                     *infer_body(pixels, shape, binary, outputs_binary)))
    check(stages == ref_stage, "exit stages (binary %s/%s): %s vs %s" % (binary, outputs_binary, stages, ref_stage))
    check(all(close(a, b) for a, b in zip(logits, ref_logits)), "logits (binary %s/%s)" % (binary, outputs_binary))

# Only the outputs asked for; parameters.binary_data_output makes every output binary.
body = json.loads(infer_body(pixels, shape)[0])
body["outputs"] = [{"name": "exit_stage"}]
status, headers, raw = request(port, "/v2/models/thinkingvit/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
outs = json.loads(raw)["outputs"] if status == 200 else []
check([o["name"] for o in outs] == ["exit_stage"] and outs[0]["data"] == ref_stage, "only exit_stage: %s" % raw[:300])
body = json.loads(infer_body(pixels, shape)[0])
body["parameters"] = {"binary_data_output": True}
logits, stages = answer(*request(port, "/v2/models/thinkingvit/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}))
check(stages == ref_stage and all(close(a, b) for a, b in zip(logits, ref_logits)), "binary_data_output")
body["outputs"] = [{"name": "scores"}]
status, _, raw = request(port, "/v2/models/thinkingvit/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
check(status == 400 and "outputs are 'logits' and 'exit_stage'" in json.loads(raw)["error"], "an unknown output: %d %s" % (status, raw))
status, _, raw = request(port, "/v2")
check(status == 200 and "binary_tensor_data" in json.loads(raw)["extensions"], "server metadata: %s" % raw)
status, _, raw = request(port, "/v2/models/thinkingvit/infer", *infer_body([], [0, 3, 8, 8]))
check(status == 200 and json.loads(raw)["outputs"][0]["shape"] == [0, 12], "an empty request: %d %s" % (status, raw))

# parameters.threshold: above ln 10 every image stops at stage 0.
_, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"threshold": 3.0})))
check(stages == [0] * n, "threshold 3 stops everything at stage 0: %s" % stages)

# parameters.budget, GMACs per image: the stages whose cumulative cost fits run, the last decides.
cost = meta["parameters"]["stage_gmacs"]
check(len(cost) == 3 and 0 < cost[0] < cost[1] < cost[2], "metadata stage_gmacs: %s" % cost)
stage0_logits, _ = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"threshold": 3.0})))
logits, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"budget": cost[0]})))
check(stages == [0] * n and all(close(a, b) for a, b in zip(logits, stage0_logits)), "budget of stage 0: %s" % stages)
_, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"budget": (cost[1] + cost[2]) / 2})))
check(stages == [min(s, 1) for s in ref_stage], "budget between stages 1 and 2: %s vs %s" % (stages, ref_stage))
logits, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"budget": cost[2]})))
check(stages == ref_stage and all(close(a, b) for a, b in zip(logits, ref_logits)), "budget of every stage")
for budget, message in [(cost[0] / 2, "below stage 0's"), ("big", "expected GMACs per image")]:
    status, _, raw = request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"budget": budget}))
    check(status == 400 and "parameter 'budget'" in json.loads(raw)["error"] and message in json.loads(raw)["error"],
          "budget %r: %d %s" % (budget, status, raw))

# Concurrent clients, one image each: answers are their own, and the requests share batches.
before = request(port, "/metrics")[2].decode()
results = [None] * 12
def client(i):
    j = i % n
    results[i] = answer(*request(port, "/v2/models/thinkingvit/infer",
                                 *infer_body(pixels[j * per:(j + 1) * per], [1, 3, 8, 8])))
threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i, r in enumerate(results):
    check(r is not None and r[1] == [ref_stage[i % n]] and close(r[0][0], ref_logits[i % n]), "client %d" % i)
metrics = request(port, "/metrics")[2].decode()
def counter(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
forwards = counter(metrics, 'thinkingvit_stage_forwards_total{stage="0"}') - counter(before, 'thinkingvit_stage_forwards_total{stage="0"}')
check(0 < forwards < 12, "12 one-image requests share stage-0 batches of 4: %d forwards" % forwards)
check('thinkingvit_requests_total{code="200"}' in metrics, "metrics count 200s")
check("thinkingvit_request_duration_seconds_bucket" in metrics and "thinkingvit_queued_images 0" in metrics, "metrics histogram and queue depth")

bad = [
    (b"{not json", 400, "malformed JSON"),
    (json.dumps({"inputs": [{"name": "images", "datatype": "FP64", "shape": [1, 3, 8, 8], "data": [0] * 192}]}).encode(), 400, "datatype must be FP32"),
    (json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 9, 9], "data": [0] * 243}]}).encode(), 400, "the model expects [N, 3, 8, 8]"),
    (json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0] * 191}]}).encode(), 400, "'data' holds 191"),
    (json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [10 ** 9, 3, 8, 8], "data": []}]}).encode(), 413, "more than the server takes"),
    (json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0] * 192}]}).encode(), 400, "named 'images'"),
    (json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": ["x"] * 192}]}).encode(), 400, "data holds string where a number belongs"),
]
for body, want, message in bad:
    status, _, raw = request(port, "/v2/models/thinkingvit/infer", body)
    check(status == want and message in json.loads(raw)["error"], "bad body -> %d '%s': got %d %s" % (want, message, status, raw[:200]))
deep = ("[" * 5000 + "]" * 5000).encode()
status, _, raw = request(port, "/v2/models/thinkingvit/infer", b'{"inputs":[{"name":"images","data":' + deep + b"}]}",
                         {"Content-Type": "application/json"})
check(status == 400 and "nests deeper" in json.loads(raw)["error"], "deep nesting: %d %s" % (status, raw[:200]))
claimed = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [4096, 3, 8, 8], "data": []}]}).encode()
status, _, raw = request(port, "/v2/models/thinkingvit/infer", claimed, {"Content-Type": "application/json"})
check(status == 400 and "bytes can carry" in json.loads(raw)["error"], "a shape the body cannot carry: %d %s" % (status, raw[:200]))
body, headers = infer_body(pixels, shape, binary=True)
for value in ["-1", "abc", str(len(body) + 1)]:
    status, _, raw = request(port, "/v2/models/thinkingvit/infer", body, dict(headers, **{"Inference-Header-Content-Length": value}))
    check(status == 400 and "Inference-Header-Content-Length" in json.loads(raw)["error"], "header length %s: %d %s" % (value, status, raw[:200]))
status, _, raw = request(port, "/v2/models/thinkingvit/infer", body[:-4], headers)
check(status == 400 and "can carry" in json.loads(raw)["error"], "a truncated binary part: %d %s" % (status, raw[:200]))
typed = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0] * 192}],
                    "outputs": [{"name": "logits", "parameters": {"binary_data": "yes"}}]}).encode()
status, _, raw = request(port, "/v2/models/thinkingvit/infer", typed, {"Content-Type": "application/json"})
check(status == 400, "a wrongly typed field is a 400: %d %s" % (status, raw[:200]))
# Many thresholds: each gets its queues, which go once idle; every answer is right.
for i in range(30):
    _, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape, params={"threshold": 3.0 + i / 100})))
    check(stages == [0] * n, "threshold %g" % (3.0 + i / 100))
status, _, raw = request(port, "/v2/models/other/infer", *infer_body(pixels, shape))
check(status == 404 and "this server serves 'thinkingvit'" in json.loads(raw)["error"], "unknown model: %d %s" % (status, raw))
status, _, raw = request(port, "/v2/models/thinkingvit/infer", infer_body(pixels, shape)[0])  # form-encoded
check(status == 413 and "application/json" in json.loads(raw)["error"], "a form-encoded body over 8 KiB: %d %s" % (status, raw))
status, _, raw = request(port, "/v2/nothing")
check(status == 404 and "no route GET /v2/nothing" in json.loads(raw)["error"], "no route: %d %s" % (status, raw))
check(request(port, "/v2/health/live")[0] == 200, "still up after bad bodies")
# scripts/loadgen.py: closed loop and Poisson, stopping by themselves, with a report.
loadgen = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "loadgen.py")
for mode in (["--concurrency", "3", "--requests", "20"], ["--rate", "100", "--duration", "1"]):
    r = subprocess.run([sys.executable, loadgen, "--url", "http://127.0.0.1:%d" % port, "--warmup", "0"] + mode,
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "loadgen %s: %s" % (mode, r.stderr))
    if r.returncode == 0:
        rep = json.loads(r.stdout)
        check(rep["codes"] == {"200": rep["requests"]} and rep["requests"] > 0, "loadgen %s codes: %s" % (mode, rep))
        check(0 < rep["p50_ms"] <= rep["p99_ms"] and rep["img_per_s"] > 0, "loadgen %s latency: %s" % (mode, rep))
        if "--requests" in mode:
            check(rep["requests"] == 20, "loadgen stops after --requests: %s" % rep)
r = subprocess.run([sys.executable, loadgen, "--url", "http://10.1.2.3:80"], capture_output=True, text=True)
check(r.returncode != 0 and "loopback http only" in r.stderr, "loadgen refuses other hosts: %s" % r.stderr)
proc.send_signal(signal.SIGTERM)
check(proc.wait(timeout=30) == 0, "server A exits 0 on SIGTERM")

# SIGTERM during start-up (once the model is being loaded, before the server listens): the
# server stops as soon as it runs, and exits 0.
port_early = free_port()
early = subprocess.Popen([BIN, "serve", "--weights", WEIGHTS, "--head-dim", "4", "--port", str(port_early)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
for line in early.stdout:
    if "model:" in line:
        break
early.send_signal(signal.SIGTERM)
try:
    check(early.wait(timeout=30) == 0, "SIGTERM during start-up exits 0")
except subprocess.TimeoutExpired:
    early.kill()
    check(False, "SIGTERM during start-up: still running after 30 s")

# --no-regroup: each request's early exit alone; the same answers.
proc, port, log = start("--max-batch", "4", "--no-regroup")
logits, stages = answer(*request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape)))
check(stages == ref_stage and all(close(x, y) for x, y in zip(logits, ref_logits)), "--no-regroup answers")
proc.send_signal(signal.SIGTERM)
check(proc.wait(timeout=30) == 0, "the --no-regroup server exits 0")

# Server B: a queue of 8 images and a long delay: the first request waits, the second overflows;
# SIGTERM then answers the one in flight and exits 0. A body over --max-body-mb is refused.
proc, port, log = start("--max-batch", "64", "--max-delay-ms", "5000", "--max-queue", "8", "--max-body-mb", "0.05")
first = {}
def slow():
    first["r"] = request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels, shape), timeout=60)
t = threading.Thread(target=slow)
t.start()
for _ in range(100):  # until the first request is queued
    if counter(request(port, "/metrics")[2].decode(), "thinkingvit_queued_images") == n:
        break
    time.sleep(0.05)
status, headers, raw = request(port, "/v2/models/thinkingvit/infer", *infer_body(pixels[:3 * per], [3, 3, 8, 8]))
check(status == 503 and headers.get("Retry-After") == "1", "overload: %d %s" % (status, raw))
big = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.5] * 30000}]}).encode()
status, _, raw = request(port, "/v2/models/thinkingvit/infer", big, {"Content-Type": "application/json"})
check(status == 413 and "--max-body-mb" in json.loads(raw)["error"], "a body over --max-body-mb is 413: %d %s" % (status, raw))
start_drain = time.time()
proc.send_signal(signal.SIGTERM)
t.join(timeout=60)
check("r" in first, "the request in flight was answered")
if "r" in first:
    logits, stages = answer(*first["r"])
    check(stages == ref_stage, "drained answer equals infer")
code = proc.wait(timeout=30)
check(code == 0, "server B exits 0 after the drain, got %s" % code)
check(time.time() - start_drain < 4.5, "the drain does not wait for the 5 s deadline")
log.seek(0)
text = log.read()
check("draining in-flight requests" in text and "status=503" in text, "structured log lines:\n" + text[-2000:])

if failures:
    sys.exit("%d check(s) failed" % len(failures))
print("serve: every check passed")
