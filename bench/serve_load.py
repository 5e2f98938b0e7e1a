#!/usr/bin/env python3
"""Loopback load test of `vaekit serve`: C concurrent clients decode random codes.

    python3 bench/serve_load.py --url http://127.0.0.1:PORT [--pid PID] [--clients 1,8,64]

Each level sends at most --requests requests or runs at most --seconds, whichever ends
first; prints p50/p99 latency, requests/s, refusals (503) and, with --pid, the server's
resident memory (VmRSS) before and after. Standard library only.
"""
import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def client(host, port, latent, deadline, budget, lock, out, seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    while time.monotonic() < deadline:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body = json.dumps({"z": [[rng.gauss(0, 1) for _ in range(latent)]]})
        t0 = time.perf_counter()
        conn.request("POST", "/api/decode", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        dt = time.perf_counter() - t0
        with lock:
            out.append((r.status, dt))
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/api/model")
    info = json.loads(conn.getresponse().read())
    conn.close()
    latent = info["latent"]
    print(f"model: {info['kind']}, z = {latent}, image {info['image']}")
    if a.pid:
        print(f"server RSS before: {rss_kib(a.pid) / 1024:.1f} MiB")
    for c in [int(x) for x in a.clients.split(",")]:
        lock, out, budget = threading.Lock(), [], [a.requests]
        deadline = time.monotonic() + a.seconds
        threads = [
            threading.Thread(
                target=client,
                args=(u.hostname, u.port, latent, deadline, budget, lock, out, i),
            )
            for i in range(c)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        ok = sorted(dt for s, dt in out if s == 200)
        refused = sum(1 for s, _ in out if s == 503)
        other = len(out) - len(ok) - refused
        q = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] * 1000 if ok else float("nan")
        line = (
            f"{c:3d} clients: {len(out)} requests in {wall:.1f} s, {len(ok) / wall:.0f} decodes/s, "
            f"p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, 503 {refused}, other {other}"
        )
        if a.pid:
            line += f", server RSS {rss_kib(a.pid) / 1024:.1f} MiB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
