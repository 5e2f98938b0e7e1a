#!/usr/bin/env python3
"""PyTorch reference for vaekit's VAE-GAN (Larsen et al. 2016): the same networks and the same
algorithm, written as a PyTorch user who knows autograd would write it.

Networks (vaekit's `--model vaegan` defaults):
  encoder: conv 5x5 s2 1->16, leaky ReLU 0.2, conv 5x5 s2 16->32, leaky ReLU 0.2, dense heads to
    the mean and log-variance of z (20);
  decoder: dense z->7x7x32 + ReLU, then twice nearest-neighbour doubling and a 5x5 convolution
    (32->16 + ReLU, 16->1), sigmoid (vaekit's `upsample = "resize"`, which `--model vaegan` uses);
  discriminator: conv 5x5 s1 1->16, conv 5x5 s2 16->32, conv 5x5 s2 32->64 (ReLU after each),
    dense 3136->128 + ReLU, dense 128->1; every layer spectrally normalised (one power iteration
    per step, torch.nn.utils.parametrizations.spectral_norm); the features of the reconstruction
    term are the last convolution's output before its ReLU.

One step, one forward pass of each network: the decoder on [z, z_p], the discriminator on
[x, x~, x_p]. Each network's gradient is torch.autograd.grad of its own loss with respect to its
own parameters only (autograd computes no other parameter's gradient):
  encoder:       KL + feature                      (feature = 0.5 ||D_l(x) - D_l(x~)||^2, D_l(x) a constant)
  decoder:       gamma * feature + GAN             (GAN = -log D(x~) - log D(x_p), gamma 0.05)
  discriminator: 0.5 (-log D(x)) + 0.5 (-log(1 - D(x~)) - log(1 - D(x_p))) / 2
with one Adam each (lr 3e-4, betas (0.5, 0.999), eps 1e-8: `--model vaegan`'s). Pixels in [0, 1].

--bench times what `vaekit bench --model vaegan` times: --warmup untimed steps, then --reps
repetitions of --steps steps (consecutive batches of one shuffled order), and prints one JSON line
with the median and every repetition of the training rate, and the peak RSS.

  python3 bench/pytorch_vaegan.py --bench --steps 20 --reps 5
  python3 bench/pytorch_vaegan.py --epochs 1 --limit 5000     # one JSON line per epoch
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_vae import find, read_idx  # noqa: E402


class Encoder(nn.Module):
    def __init__(self, z=20):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)
        self.c2 = nn.Conv2d(16, 32, 5, stride=2, padding=2)
        self.mu = nn.Linear(32 * 7 * 7, z)
        self.logvar = nn.Linear(32 * 7 * 7, z)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2).flatten(1)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, z=20):
        super().__init__()
        self.d = nn.Linear(z, 32 * 7 * 7)
        self.c1 = nn.Conv2d(32, 16, 5, padding=2)
        self.c2 = nn.Conv2d(16, 1, 5, padding=2)

    def forward(self, z):
        h = F.relu(self.d(z)).view(-1, 32, 7, 7)
        h = F.relu(self.c1(F.interpolate(h, scale_factor=2, mode="nearest")))
        return torch.sigmoid(self.c2(F.interpolate(h, scale_factor=2, mode="nearest")))


class Discriminator(nn.Module):
    def __init__(self, channels=(16, 32, 64), hidden=128):
        super().__init__()
        convs, c_in = [], 1
        for i, c in enumerate(channels):
            convs.append(spectral_norm(nn.Conv2d(c_in, c, 5, stride=1 if i == 0 else 2, padding=2)))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.dense = spectral_norm(nn.Linear(c_in * 7 * 7, hidden))
        self.out = spectral_norm(nn.Linear(hidden, 1))

    def forward(self, x):
        h = x
        for conv in self.convs:
            a = conv(h)
            h = F.relu(a)
        features = a.flatten(1)  # the last convolution, before its ReLU
        logits = self.out(F.relu(self.dense(h.flatten(1)))).squeeze(1)
        return logits, features


class VaeGan:
    def __init__(self, lr=3e-4, gamma=0.05, real_weight=0.5):
        self.enc, self.dec, self.disc = Encoder(), Decoder(), Discriminator()
        self.nets = [self.enc, self.dec, self.disc]
        self.opts = [torch.optim.Adam(n.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8) for n in self.nets]
        self.gamma, self.w = gamma, real_weight

    def step(self, x):
        b = x.shape[0]
        mu, logvar = self.enc(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        z_p = torch.randn_like(mu)
        x_gen = self.dec(torch.cat([z, z_p]))  # [x~; x_p]
        logits, feats = self.disc(torch.cat([x, x_gen]))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        feature = 0.5 * (feats[:b].detach() - feats[b:2 * b]).pow(2).sum(1).mean()
        gan = F.binary_cross_entropy_with_logits(logits[b:], torch.ones_like(logits[b:]))
        real = F.binary_cross_entropy_with_logits(logits[:b], torch.ones_like(logits[:b]))
        fake = F.binary_cross_entropy_with_logits(logits[b:], torch.zeros_like(logits[b:]))
        losses = [kl + feature, self.gamma * feature + gan, self.w * real + (1 - self.w) * fake]
        grads = [torch.autograd.grad(loss, list(net.parameters()), retain_graph=i < 2)
                 for i, (loss, net) in enumerate(zip(losses, self.nets))]
        for net, opt, g in zip(self.nets, self.opts, grads):
            for p, gp in zip(net.parameters(), g):
                p.grad = gp
            opt.step()
        return {"loss": losses[0].item(), "kl": kl.item(), "feature": feature.item(), "gan": gan.item(),
                "d_real": real.item(), "d_fake": fake.item()}


def load(data, limit):
    x = read_idx(find(data, "train-images-idx3-ubyte"))
    if limit:
        x = x[:limit]
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bench", action="store_true", help="time steps like `vaekit bench --model vaegan`")
    ap.add_argument("--steps", type=int, default=20, help="--bench: timed steps per repetition")
    ap.add_argument("--reps", type=int, default=5, help="--bench: repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="--bench: untimed steps first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr = load(args.data, args.limit)
    model = VaeGan()
    n, b = xtr.shape[0], args.batch_size
    perm = torch.randperm(n)
    if args.bench:
        step = 0

        def steps(count):
            nonlocal step
            for _ in range(count):
                start = (step * b) % (n - b + 1)
                model.step(xtr[perm[start:start + b]])
                step += 1

        steps(args.warmup)
        train = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            steps(args.steps)
            train.append(args.steps * b / (time.perf_counter() - t0))
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "model": "vaegan", "batch_size": b,
                          "threads": torch.get_num_threads(),
                          "train_img_per_s": {"median": float(np.median(train)), "reps": train},
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n)
        t0, sums, count = time.perf_counter(), {}, 0
        for start in range(0, n - b + 1, b):
            m = model.step(xtr[perm[start:start + b]])
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        line = {"epoch": epoch, "images_per_sec": count * b / (time.perf_counter() - t0)}
        line.update({k: v / count for k, v in sums.items()})
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
