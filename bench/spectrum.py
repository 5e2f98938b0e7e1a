#!/usr/bin/env python3
"""Periodic texture in a run's prior samples, measured against real images: the mean power
spectrum of N prior samples (vaekit's Python package, `Model.sample`) against N test images,
binned by radial frequency.

Each image's 2-D power spectrum |FFT(x - mean(x))|^2 (per channel, summed) is averaged over the
images; bin k holds the frequencies whose radius rounds to k cycles per image side (for a square
H x H image, a period of H / k pixels). Printed per bin: the ratio samples / test images. The
summary, for the bins of period <= --period pixels (k >= H / period; the grid-like textures of a
GAN's upsampling live there):

  max_ratio   the largest bin ratio            (texture: a bin above the real images' power)
  total_ratio the ratio of the summed power    (blur: far below 1)
  max_frequency_ratio  the largest ratio at a single 2-D frequency of those periods (a grid
              texture's sharp peaks, which a radial bin averages away)

With --real-baseline it also measures N other test images against the first N (how far two sets
of real images differ: the noise floor of the ratios).

  python3 bench/spectrum.py --run runs/vaegan --data /usr/share/datasets/fashion-mnist
  python3 bench/spectrum.py --run runs/vaegan --n 1000 --seed 0 --json
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_vae import find, read_idx  # noqa: E402


def mean_power(x):
    """Mean over images of |FFT2(x - mean)|^2, channels summed. x: [n, c, h, w] -> [h, w]."""
    x = x - x.mean(axis=(2, 3), keepdims=True)
    return (np.abs(np.fft.fft2(x)) ** 2).sum(axis=1).mean(axis=0)


def radial_bins(h, w):
    """Each frequency's radius in cycles per image side, rounded (square images; else scaled
    to the height)."""
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * h
    return np.rint(np.hypot(fy[:, None], fx[None, :])).astype(int)


def compare(samples, real, period):
    """Bin ratios and the summary of `samples` against `real` ([n, c, h, w] each)."""
    h, w = samples.shape[2:]
    ps, pr = mean_power(samples), mean_power(real)
    k = radial_bins(h, w)
    bins = []
    for b in range(1, k.max() + 1):
        m = k == b
        if m.any():
            bins.append({"k": b, "period_px": h / b, "samples": float(ps[m].sum()), "real": float(pr[m].sum()),
                         "ratio": float(ps[m].sum() / max(pr[m].sum(), 1e-30))})
    high = [b for b in bins if b["period_px"] <= period]
    # Single 2-D frequencies too: a grid texture is a few sharp peaks (say 7 cycles along one
    # axis) that a radial bin averages with their quiet neighbours.
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * h, indexing="ij"))
    ratio = ps / np.maximum(pr, 1e-30)
    ratio[freq < h / period - 1e-9] = 0.0
    fy, fx = np.unravel_index(np.argmax(ratio), ratio.shape)
    cyc = lambda i, n: int(i if i <= n // 2 else i - n)  # noqa: E731
    return {
        "max_frequency_ratio": float(ratio[fy, fx]),
        "max_frequency_cycles": [cyc(fy, h), cyc(fx, w)],
        "bins": bins,
        "max_ratio": max(b["ratio"] for b in high),
        "max_ratio_period_px": max(high, key=lambda b: b["ratio"])["period_px"],
        "total_ratio": sum(b["samples"] for b in high) / max(sum(b["real"] for b in high), 1e-30),
    }


def test_images(data, n, offset=0):
    x = read_idx(find(data, "t10k-images-idx3-ubyte"))[offset:offset + n]
    x = x.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a vaekit run folder")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="IDX folder of the test images")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--period", type=float, default=4.0, help="bins of this period (px) or less are summarised")
    ap.add_argument("--real-baseline", action="store_true", help="also test images against other test images")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import vaekit

    model = vaekit.load(args.run)
    samples = model.sample(args.n, seed=args.seed)
    real = test_images(args.data, args.n)
    if real.shape[1:] != samples.shape[1:]:
        sys.exit(f"{args.data}: test images {real.shape[1:]} vs the run's {samples.shape[1:]}")
    out = {"run": args.run, "n": args.n, "seed": args.seed, "period_px": args.period,
           "samples_vs_real": compare(samples, real, args.period)}
    if len(real) < args.n:
        sys.exit(f"{args.data}: {len(real)} test images, fewer than --n {args.n}")
    if args.real_baseline:
        other = test_images(args.data, args.n, offset=args.n)
        if len(other) < args.n:
            sys.exit(f"{args.data}: --real-baseline needs 2 x --n = {2 * args.n} test images, it has {args.n + len(other)}")
        out["real_vs_real"] = compare(other, real, args.period)
    if args.json:
        print(json.dumps(out))
        return
    for name in ["samples_vs_real", "real_vs_real"]:
        if name not in out:
            continue
        r = out[name]
        print(f"{name}: bins of period <= {args.period:g} px: max ratio {r['max_ratio']:.2f} "
              f"(period {r['max_ratio_period_px']:.2f} px), total ratio {r['total_ratio']:.2f}; "
              f"largest single frequency {r['max_frequency_ratio']:.2f} "
              f"(cycles per side {r['max_frequency_cycles']})")
        print("  " + " ".join(f"{b['period_px']:.1f}px:{b['ratio']:.2f}" for b in r["bins"]))


if __name__ == "__main__":
    main()
