#!/usr/bin/env python3
"""Training from a packed file against training from memory, on one image folder.

    python3 bench/make_images.py --out /tmp/shapes --n 200000
    python3 bench/stream.py /tmp/shapes [--size 64] [--epochs 1] [--limit N] [--cold]

Packs the folder (`vaekit data pack`, unless DIR.vkd exists), then trains the conv VAE for
--epochs from the packed file and from the folder decoded into memory (same config, same seed),
and prints per run: img/s, seconds waited for data, peak resident memory split into anonymous
memory and mapped file pages (sampled from /proc every 0.2 s), and the epoch's loss. --cold
drops the page cache before the packed run (root only), so its pages come from disk.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

VAEKIT = os.environ.get("VAEKIT_BIN", "target/release/vaekit")


def rss(pid):
    """(VmRSS, RssAnon, RssFile) in MiB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
    except (FileNotFoundError, ProcessLookupError):
        return None
    kib = lambda k: int(fields.get(k, "0 kB").split()[0])
    return kib("VmRSS") / 1024, kib("RssAnon") / 1024, kib("RssFile") / 1024


def train(args, out):
    """Runs `vaekit train ARGS --out OUT`; returns peaks and the last metrics line."""
    t0 = time.time()
    p = subprocess.Popen([VAEKIT, "train", *args, "--out", out], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    peak = [0.0, 0.0, 0.0]
    while p.poll() is None:
        r = rss(p.pid)
        if r:
            peak = [max(a, b) for a, b in zip(peak, r)]
        time.sleep(0.2)
    output = p.stdout.read()
    if p.returncode != 0:
        sys.exit(f"vaekit train {' '.join(args)} failed:\n{output}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        last = json.loads(f.read().strip().splitlines()[-1])
    return peak, last, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", default="1")
    ap.add_argument("--limit", help="train on the first N images only")
    ap.add_argument("--cold", action="store_true", help="drop the page cache first (root)")
    a = ap.parse_args()
    packed = a.folder.rstrip("/") + ".vkd"
    if not os.path.exists(packed):
        t0 = time.time()
        subprocess.run([VAEKIT, "data", "pack", a.folder, "--size", f"{a.size}x{a.size}",
                        "--channels", "3", "--out", packed], check=True)
        print(f"pack: {time.time() - t0:.1f} s")
    size_mib = os.path.getsize(packed) / 2**20
    work = tempfile.mkdtemp(prefix="vaekit-stream-")
    config = os.path.join(work, "image.toml")
    with open(config, "w") as f:
        f.write(f"[model]\nimage = {{ channels = 3, height = {a.size}, width = {a.size} }}\n")
    common = ["--config", config, "--epochs", a.epochs] + (["--limit", a.limit] if a.limit else [])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs; packed file {size_mib:.0f} MiB")
    runs = []
    if a.cold:
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    runs.append(("packed (mapped)", *train(["--data-dir", packed, *common], os.path.join(work, "packed"))))
    runs.append(("folder (in memory)", *train(["--data-dir", a.folder, *common], os.path.join(work, "memory"))))
    print(f"{'source':<20} {'img/s':>7} {'waited s':>9} {'peak RSS MiB':>13} {'anon':>7} {'file':>7} "
          f"{'wall s':>7} {'train loss':>11}")
    for name, (total, anon, file), m, wall in runs:
        print(f"{name:<20} {m['images_per_sec']:>7.0f} {m.get('data_wait_seconds', float('nan')):>9.2f} "
              f"{total:>13.0f} {anon:>7.0f} {file:>7.0f} {wall:>7.0f} {m['train_loss']:>11.2f}")
    ratio = runs[0][2]["images_per_sec"] / runs[1][2]["images_per_sec"]
    print(f"packed / memory img/s: {ratio:.3f}")


if __name__ == "__main__":
    main()
