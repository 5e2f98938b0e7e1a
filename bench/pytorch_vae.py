#!/usr/bin/env python3
"""PyTorch reference for vaekit: the same networks and the same protocol.

conv: the article's network (kvfrans/variational-autoencoder) as vaekit builds it:
  conv 5x5 s2 1->16, leaky ReLU 0.2, conv 5x5 s2 16->32, leaky ReLU 0.2, dense heads to the
  mean and log-variance of z (20), dense z->7x7x32 + ReLU, convT 5x5 s2 32->16 + ReLU,
  convT 5x5 s2 16->1, logits.
mlp: pytorch/examples' VAE, 784-400-20-400-784 with ReLU.

Protocol: Adam (lr 1e-3, eps 1e-8), shuffled batches, loss = BCE-with-logits summed over pixels
+ KL summed over z, averaged over the batch; pixels in [0, 1] (default), or with
--binarize dynamic a new Bernoulli draw of every training batch and a test set binarised once
with a fixed seed; test neg-ELBO with one sampled z per image, nats per image. With --iw K...,
after training, the importance-sampled -log p(x) of the test set (Burda et al. 2016) for each K,
on the first --iw-limit images. Prints one JSON line per epoch / estimate and a summary.

  python3 bench/pytorch_vae.py --model conv --epochs 10 --data /usr/share/datasets/fashion-mnist
  python3 bench/pytorch_vae.py --binarize dynamic --iw 1000 5000 --iw-limit 1000 200

With --bench it instead times what `vaekit bench` times, on the same schedule: --warmup untimed
training steps, then --reps repetitions of --steps steps (consecutive batches of one shuffled
order), of decoding 1000 prior samples (500 at a time), and of the IS estimate with K = 100 on
the first 100 test images; it prints one JSON line with the median and every repetition of each
rate and the peak RSS.

  python3 bench/pytorch_vae.py --bench --model mlp --batch-size 128

--precision bf16 runs every forward pass (training, sampling, IS) under
torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's own mixed precision: bf16 products with
fp32 accumulation and fp32 master weights; the loss is taken in fp32. --channels-last stores the
conv model's weights and images in the NHWC layout (oneDNN's preferred one).
--device cuda runs everything on an NVIDIA GPU (bench/gpu.sh).

--matmul-peak instead prints the machine's measured matrix-product peak (torch.mm of 2048 x 2048
matrices, fp32 and, where the CPU has it, bf16) in GFLOP/s on --threads threads, as one JSON line.
"""
import contextlib
import math
import argparse
import resource
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 8, f"{path}: bad magic"
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(d, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{d}: no {stem}(.gz)")


class ConvVAE(nn.Module):
    def __init__(self, z=20):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)
        self.c2 = nn.Conv2d(16, 32, 5, stride=2, padding=2)
        self.mu = nn.Linear(32 * 7 * 7, z)
        self.logvar = nn.Linear(32 * 7 * 7, z)
        self.d = nn.Linear(z, 32 * 7 * 7)
        self.t1 = nn.ConvTranspose2d(32, 16, 5, stride=2, padding=2, output_padding=1)
        self.t2 = nn.ConvTranspose2d(16, 1, 5, stride=2, padding=2, output_padding=1)

    def encode(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        h = F.relu(self.d(z)).view(-1, 32, 7, 7)
        return self.t2(F.relu(self.t1(h)))


class MlpVAE(nn.Module):
    def __init__(self, z=20):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.mu = nn.Linear(400, z)
        self.logvar = nn.Linear(400, z)
        self.fc3 = nn.Linear(z, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        return self.fc4(F.relu(self.fc3(z))).view(-1, 1, 28, 28)


PRECISION = {"fp32": None, "bf16": torch.bfloat16}


# Where tensors live (--device): "cpu" or "cuda".
DEVICE = "cpu"


def autocast(precision):
    """The context that runs forward passes at `precision` (nothing for fp32)."""
    dtype = PRECISION[precision]
    return torch.autocast(DEVICE, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def sync():
    """Waits for the device's queued work (timings on CUDA)."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_peak(threads, size=2048, reps=5):
    """GFLOP/s of torch.mm on size x size matrices, best of reps, for fp32 and bf16 (on CUDA
    fp32 without TF32, PyTorch's default)."""
    torch.set_num_threads(threads)
    out = {}
    for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16)]:
        a = torch.randn(size, size, device=DEVICE).to(dtype)
        b = torch.randn(size, size, device=DEVICE).to(dtype)
        torch.mm(a, b)
        sync()
        best = 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = max(best, 2 * size**3 / (time.perf_counter() - t0) / 1e9)
        out[f"{name}_gflops"] = best
    return out


def neg_elbo_terms(model, x, precision="fp32"):
    with autocast(precision):
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = model.decode(z)
    mu, logvar, logits = mu.float(), logvar.float(), logits.float()
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon, kl


@torch.no_grad()
def iw_nll(model, x, k, rows=5000, precision="fp32"):
    """-log p(x) per image, estimated with k importance samples: the encoder runs once per
    batch, samples are decoded `rows` (image, sample) pairs at a time, and the log weights are
    reduced with a running log-sum-exp."""
    b = x.shape[0]
    with autocast(precision):
        mu, logvar = model.encode(x)
    mu, logvar = mu.float(), logvar.float()
    std = torch.exp(0.5 * logvar)
    acc = torch.full((b,), -math.inf, dtype=torch.float64, device=x.device)
    chunk = max(1, rows // b)
    done = 0
    log2pi = math.log(2 * math.pi)
    while done < k:
        kk = min(chunk, k - done)
        eps = torch.randn(kk, b, mu.shape[1], device=x.device)
        z = mu + std * eps  # [kk, b, latent]
        with autocast(precision):
            logits = model.decode(z.reshape(kk * b, -1))
        logits = logits.float()
        xs = x.unsqueeze(0).expand(kk, *x.shape).reshape(kk * b, *x.shape[1:])
        log_px_z = -F.binary_cross_entropy_with_logits(logits, xs, reduction="none").flatten(1).sum(1).view(kk, b)
        log_pz = (-0.5 * (z.pow(2) + log2pi)).sum(2)
        log_qz = (-0.5 * (eps.pow(2) + log2pi) - 0.5 * logvar).sum(2)
        lw = (log_px_z + log_pz - log_qz).double()
        acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
        done += kk
    return -(acc - math.log(k))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["conv", "mlp"], default="conv")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-eval", action="store_true", help="skip the per-epoch test ELBO")
    ap.add_argument("--binarize", choices=["none", "dynamic"], default="none")
    ap.add_argument("--iw", type=int, nargs="*", default=[], help="importance sample counts K")
    ap.add_argument("--iw-limit", type=int, nargs="*", default=[],
                    help="first N test images for each K of --iw (one value: for all)")
    ap.add_argument("--bench", action="store_true", help="time steps, sampling and IS like `vaekit bench`")
    ap.add_argument("--steps", type=int, default=50, help="--bench: timed training steps per repetition")
    ap.add_argument("--reps", type=int, default=5, help="--bench: repetitions (medians reported)")
    ap.add_argument("--warmup", type=int, default=5, help="--bench: untimed training steps first")
    ap.add_argument("--precision", choices=sorted(PRECISION), default="fp32",
                    help="bf16: forward passes under torch.autocast (bf16 products, fp32 weights)")
    ap.add_argument("--channels-last", action="store_true", help="conv: NHWC weights and images")
    ap.add_argument("--matmul-peak", action="store_true", help="print torch.mm's GFLOP/s and exit")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device

    if args.matmul_peak:
        print(json.dumps({"threads": args.threads, **matmul_peak(args.threads)}))
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr = torch.from_numpy(read_idx(find(args.data, "train-images-idx3-ubyte")).copy()).float().div_(255).unsqueeze(1)
    xte = torch.from_numpy(read_idx(find(args.data, "t10k-images-idx3-ubyte")).copy()).float().div_(255).unsqueeze(1)
    if args.limit:
        xtr = xtr[: args.limit]
    dynamic = args.binarize == "dynamic"
    if dynamic:
        xte = torch.bernoulli(xte, generator=torch.Generator().manual_seed(args.seed))
    model = (ConvVAE() if args.model == "conv" else MlpVAE()).to(DEVICE)
    xtr, xte = xtr.to(DEVICE), xte.to(DEVICE)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        xtr = xtr.contiguous(memory_format=torch.channels_last)
        xte = xte.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-8)
    if args.bench:
        return bench(args, model, opt, xtr, xte)
    n = xtr.shape[0]
    results = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        tot = 0.0
        for i in range(0, n, args.batch_size):
            x = xtr[perm[i : i + args.batch_size]]
            if dynamic:
                x = torch.bernoulli(x)
            recon, kl = neg_elbo_terms(model, x, args.precision)
            loss = (recon + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item()
        secs = time.perf_counter() - t0
        line = {"epoch": epoch, "train_loss": tot / ((n + args.batch_size - 1) // args.batch_size),
                "images_per_sec": n / secs, "seconds": secs}
        if not args.no_eval:
            model.eval()
            r = k = 0.0
            with torch.no_grad():
                for i in range(0, xte.shape[0], 500):
                    recon, kl = neg_elbo_terms(model, xte[i : i + 500], args.precision)
                    r += recon.sum().item()
                    k += kl.sum().item()
            m = xte.shape[0]
            line.update(test_neg_elbo=(r + k) / m, test_recon=r / m, test_kl=k / m)
        results.append(line)
        print(json.dumps(line), flush=True)
    model.eval()
    iw = []
    limits = args.iw_limit if len(args.iw_limit) > 1 else args.iw_limit * len(args.iw)
    for j, k in enumerate(args.iw):
        xiw = xte[: limits[j]] if j < len(limits) else xte
        t0 = time.perf_counter()
        nll = torch.cat([iw_nll(model, xiw[i : i + 100], k, precision=args.precision) for i in range(0, xiw.shape[0], 100)]).mean().item()
        line = {"iw_k": k, "nll": nll, "images": xiw.shape[0], "seconds": time.perf_counter() - t0}
        iw.append(line)
        print(json.dumps(line), flush=True)
    summary = {"framework": f"pytorch {torch.__version__}", "model": args.model, "threads": torch.get_num_threads(),
               "precision": args.precision, "channels_last": args.channels_last,
               "epochs": args.epochs, "binarize": args.binarize, "final": results[-1], "iw": iw,
               "median_images_per_sec": float(np.median([r["images_per_sec"] for r in results]))}
    print(json.dumps({"summary": summary}))


def rate(reps):
    return {"median": float(np.median(reps)), "reps": reps}


def bench(args, model, opt, xtr, xte):
    n, b = xtr.shape[0], args.batch_size
    perm = torch.randperm(n)
    step = 0

    def steps(count):
        nonlocal step
        model.train()
        for _ in range(count):
            start = (step * b) % (n - b + 1)
            recon, kl = neg_elbo_terms(model, xtr[perm[start : start + b]], args.precision)
            loss = (recon + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            step += 1

    steps(args.warmup)
    train = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        steps(args.steps)
        train.append(args.steps * b / (time.perf_counter() - t0))
    model.eval()
    sample = []
    with torch.no_grad():
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in range(2):
                with autocast(args.precision):
                    logits = model.decode(torch.randn(500, 20, device=DEVICE))
                torch.sigmoid(logits.float())
            sync()
            sample.append(1000 / (time.perf_counter() - t0))
    iw = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        iw_nll(model, xte[:100], 100, precision=args.precision)
        sync()
        iw.append(100 * 100 / (time.perf_counter() - t0))
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "device": DEVICE, "model": args.model, "batch_size": b,
                      "threads": torch.get_num_threads(), "precision": args.precision,
                      "channels_last": args.channels_last, "train_img_per_s": rate(train),
                      "sample_img_per_s": rate(sample), "iw_samples_per_s": rate(iw),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
