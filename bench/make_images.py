#!/usr/bin/env python3
"""Writes a large generated image folder for `vaekit data pack` and streaming benchmarks.

    python3 bench/make_images.py --out /tmp/shapes --n 200000 [--side 64] [--workers 2]

N RGB PNGs of SIDE x SIDE in 10 class folders (`out/c0` .. `out/c9`): a coloured shape (disc,
square, triangle, ring or cross) on a light or dark gradient with a little noise; the class is
(shape, background). Every image is drawn from its own seed (its index), so a folder made twice
is byte-identical whatever the worker count. Needs numpy only (PNG is written with zlib).
"""

import argparse
import multiprocessing as mp
import os
import struct
import sys
import time
import zlib

import numpy as np

SHAPES = ["disc", "square", "triangle", "ring", "cross"]


def png_bytes(rgb):
    """An 8-bit RGB PNG of `rgb` ([h, w, 3] uint8)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def draw(index, side):
    """(class, image) of image `index`."""
    rng = np.random.default_rng(index)
    label = int(rng.integers(10))
    shape, dark = SHAPES[label % 5], label >= 5
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = rng.uniform(0.05, 0.3) if dark else rng.uniform(0.7, 0.95)
    tilt = rng.uniform(-0.15, 0.15, size=2)
    bg = np.clip(base + tilt[0] * (xx - 0.5) + tilt[1] * (yy - 0.5), 0, 1)
    img = np.repeat(bg[..., None], 3, axis=2)
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    r = rng.uniform(0.12, 0.3)
    dx, dy = xx - cx, yy - cy
    if shape == "disc":
        mask = dx * dx + dy * dy < r * r
    elif shape == "square":
        mask = (np.abs(dx) < r * 0.8) & (np.abs(dy) < r * 0.8)
    elif shape == "triangle":
        mask = (dy < r * 0.7) & (dy > -r) & (np.abs(dx) < (dy + r) * 0.6)
    elif shape == "ring":
        d2 = dx * dx + dy * dy
        mask = (d2 < r * r) & (d2 > (0.6 * r) ** 2)
    else:
        mask = ((np.abs(dx) < r * 0.25) & (np.abs(dy) < r)) | ((np.abs(dy) < r * 0.25) & (np.abs(dx) < r))
    colour = rng.uniform(0, 1, size=3)
    img[mask] = colour
    img += rng.normal(0, 0.02, size=img.shape)
    return label, (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def work(args):
    lo, hi, side, out = args
    for i in range(lo, hi):
        label, img = draw(i, side)
        with open(os.path.join(out, f"c{label}", f"{i:07d}.png"), "wb") as f:
            f.write(png_bytes(img))
    return hi - lo


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"{a.out}: exists and is not empty; choose another --out")
    for c in range(10):
        os.makedirs(os.path.join(a.out, f"c{c}"), exist_ok=True)
    step = 2000
    jobs = [(lo, min(lo + step, a.n), a.side, a.out) for lo in range(0, a.n, step)]
    t0, done = time.time(), 0
    with mp.Pool(a.workers) as pool:
        for n in pool.imap_unordered(work, jobs):
            done += n
            print(f"\r{done}/{a.n} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    total = sum(e.stat().st_size for c in range(10) for e in os.scandir(os.path.join(a.out, f"c{c}")))
    print(f"wrote {a.n} {a.side}x{a.side} RGB PNGs ({total / 2**20:.0f} MiB) to {a.out} "
          f"in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
