#!/usr/bin/env python3
"""Load generator for `thinkingvit serve` (KServe v2 REST), loopback only, Python stdlib only.

Closed loop (--concurrency C: C clients, each sends its next request when the last is answered)
or open loop (--rate R: Poisson arrivals at R requests/s, at most --max-in-flight at once). It
stops by itself after --duration seconds or --requests requests, then prints one line of JSON:
requests, images, seconds, img/s, req/s, p50 / p90 / p99 latency (ms), and the error codes.

  loadgen.py --url http://127.0.0.1:8000 [--model thinkingvit] [--images-per-request 1]
             [--concurrency 4 | --rate 200] [--duration 10 | --requests N] [--json-body]
             [--warmup 1] [--seed 0]

The image shape comes from the server's metadata; the images are random normal values, sent in
the binary tensor extension unless --json-body.
"""
import argparse
import http.client
import json
import random
import struct
import sys
import threading
import time
import urllib.parse


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="thinkingvit")
    p.add_argument("--images-per-request", type=int, default=1)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=int, default=0)
    mode.add_argument("--rate", type=float, default=0)
    p.add_argument("--max-in-flight", type=int, default=256)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--requests", type=int, default=0)
    p.add_argument("--warmup", type=float, default=1, help="seconds sent first and not counted")
    p.add_argument("--json-body", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    url = urllib.parse.urlparse(a.url)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost", "::1"):
        p.error("--url: loopback http only (127.0.0.1, localhost, ::1), found '%s'" % a.url)
    if a.images_per_request < 1 or a.max_in_flight < 1 or a.duration <= 0 or a.requests < 0:
        p.error("--images-per-request and --max-in-flight must be >= 1, --duration > 0, --requests >= 0")
    if a.concurrency < 0 or a.rate < 0:
        p.error("--concurrency and --rate must be >= 0")
    if not a.concurrency and not a.rate:
        a.concurrency = 4
    a.host, a.port = url.hostname, url.port or 80
    return a


def body_for(a, shape):
    rng = random.Random(a.seed)
    n = a.images_per_request
    values = [rng.gauss(0, 1) for _ in range(n * shape[0] * shape[1] * shape[2])]
    head = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [n] + shape}]}
    if a.json_body:
        head["inputs"][0]["data"] = values
        return json.dumps(head).encode(), {"Content-Type": "application/json"}
    head["inputs"][0]["parameters"] = {"binary_data_size": 4 * len(values)}
    head["outputs"] = [{"name": "logits", "parameters": {"binary_data": True}},
                       {"name": "exit_stage", "parameters": {"binary_data": True}}]
    header = json.dumps(head).encode()
    return header + struct.pack("<%df" % len(values), *values), {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency, self.codes, self.sent = [], {}, 0

    def add(self, ms, code, counted):
        with self.lock:
            if counted:
                self.codes[code] = self.codes.get(code, 0) + 1
                if code == 200:
                    self.latency.append(ms)


def one(a, body, headers, conn_holder):
    start = time.perf_counter()
    try:
        if conn_holder[0] is None:
            conn_holder[0] = http.client.HTTPConnection(a.host, a.port, timeout=60)
        conn = conn_holder[0]
        conn.request("POST", "/v2/models/%s/infer" % a.model, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        code = r.status
    except (OSError, http.client.HTTPException):
        conn_holder[0] = None
        code = -1
    return (time.perf_counter() - start) * 1000, code


def main():
    a = parse()
    conn = http.client.HTTPConnection(a.host, a.port, timeout=10)
    conn.request("GET", "/v2/models/%s" % a.model)
    r = conn.getresponse()
    meta = json.loads(r.read() or b"{}")
    if r.status != 200:
        sys.exit("loadgen: %s: metadata of '%s' answered %d: %s" % (a.url, a.model, r.status, meta))
    shape = meta["inputs"][0]["shape"][1:]
    body, headers = body_for(a, shape)
    stats = Stats()
    t0 = time.perf_counter()
    begin = t0 + a.warmup
    end = begin + a.duration
    limit = a.requests
    counted = [0]
    lock = threading.Lock()

    def take():
        """Whether to send another request, and whether it counts (sent after the warm-up)."""
        now = time.perf_counter()
        with lock:
            if limit and counted[0] >= limit:
                return False, False
            if not limit and now >= end:
                return False, False
            counts = now >= begin
            counted[0] += counts
            return True, counts

    def client():
        holder = [None]
        while True:
            go, counts = take()
            if not go:
                return
            ms, code = one(a, body, headers, holder)
            stats.add(ms, code, counts)

    threads = []
    if a.concurrency:
        threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
        for t in threads:
            t.start()
    else:
        rng = random.Random(a.seed + 1)
        slots = threading.Semaphore(a.max_in_flight)
        dropped = 0
        next_at = time.perf_counter()

        def fire(counts):
            try:
                ms, code = one(a, body, headers, [None])
                stats.add(ms, code, counts)
            finally:
                slots.release()
        while True:
            go, counts = take()
            if not go:
                break
            next_at += rng.expovariate(a.rate)
            time.sleep(max(0.0, next_at - time.perf_counter()))
            if not slots.acquire(blocking=False):
                dropped += counts
                continue
            t = threading.Thread(target=fire, args=(counts,))
            t.start()
            threads.append(t)
        if dropped:
            stats.codes["dropped (max in flight)"] = dropped
    for t in threads:
        t.join()
    seconds = time.perf_counter() - max(begin, t0) if not limit else time.perf_counter() - t0
    lat = sorted(stats.latency)
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None
    ok = len(lat)
    print(json.dumps({
        "mode": "closed loop, %d clients" % a.concurrency if a.concurrency else "Poisson, %g req/s" % a.rate,
        "images_per_request": a.images_per_request, "requests": ok, "images": ok * a.images_per_request,
        "seconds": round(seconds, 3), "img_per_s": round(ok * a.images_per_request / seconds, 1),
        "req_per_s": round(ok / seconds, 1), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
        "codes": {str(k): v for k, v in stats.codes.items()}}))


if __name__ == "__main__":
    main()
