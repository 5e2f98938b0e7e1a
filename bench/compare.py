#!/usr/bin/env python3
"""Quality, speed and memory of vaekit against the PyTorch reference, in one invocation.

For each model it trains vaekit (release build, CPU/Flex) and bench/pytorch_vae.py on the same
data with the same protocol, one after the other on the same machine, and prints test neg-ELBO,
training throughput (median over epochs), peak RSS, and the ratios vaekit / PyTorch.

  python3 bench/compare.py                      # conv 10 epochs + mlp 3 epochs, Fashion-MNIST
  python3 bench/compare.py --conv-epochs 2 --mlp-epochs 1 --limit 10000   # quicker
  python3 bench/compare.py --bench              # `vaekit bench` vs pytorch_vae.py --bench

--bench times training steps, sampling and the IS estimate with repetitions instead of whole
epochs (see `vaekit bench --help`), conv (batch 100) and mlp (batch 128), one process per model
and framework, alternating the two for --rounds rounds (default 3), and prints medians and
ratios (vaekit / PyTorch; above 1 means vaekit is faster) with the per-round range, and the
share of the machine's measured matrix-product peak (torch.mm of 2048 x 2048 matrices, same
thread count) that each side's rate reaches, from the model's matrix-product FLOPs per image.

  python3 bench/compare.py --bench --precision bf16 [--channels-last]
      # vaekit --precision bf16 against torch.autocast("cpu", dtype=torch.bfloat16); the peak
      # is then torch.mm's in bf16

  python3 bench/compare.py --bench --models vaegan [--baseline OLD_VAEKIT]
      # the row `vaegan training img/s`: `vaekit bench --model vaegan` against
      # bench/pytorch_vaegan.py --bench (the same networks and algorithm, one forward pass per
      # step, torch.autograd.grad of each loss for its own network), --steps capped at 20; with
      # --baseline, an A/B of two vaekit binaries (say, a build of main) in the same rounds, each
      # timed by `train --model vaegan --epochs 1 --limit 2000` (which every version has)
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# CPU flags that decide which kernels run: vector width, bf16 dot products, AMX tiles.
FLAGS = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]


def cpu_description(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name, its logical CPUs and which of FLAGS it has, in one line (every
    figure is printed with it: the same binary runs at different speeds on AMD and Intel)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        import platform
        return f"{platform.processor() or platform.machine()} (no {cpuinfo})"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    have = set(flags.group(1).split()) if flags else set()
    cpus = len(re.findall(r"^processor\s*:", text, re.M))
    name = " ".join(model.group(1).split()) if model else "unknown CPU"
    listed = " ".join(f for f in FLAGS if f in have) or "none of " + " ".join(FLAGS)
    return f"{name}, {cpus} logical CPUs, flags: {listed}"


# Multiply-adds per image of each model's layers, as (name, MACs, first layer): conv and
# transposed conv: out positions x c_out x c_in x kh x kw (transposed: in positions); dense: in x out.
LAYERS = {
    "conv": [("conv1", 14 * 14 * 16 * 1 * 25, True), ("conv2", 7 * 7 * 32 * 16 * 25, False),
             ("mean+logvar", 2 * 32 * 7 * 7 * 20, False), ("dense", 20 * 32 * 7 * 7, False),
             ("convT1", 7 * 7 * 32 * 16 * 25, False), ("convT2", 14 * 14 * 16 * 1 * 25, False)],
    "mlp": [("fc1", 784 * 400, True), ("mean+logvar", 2 * 400 * 20, False), ("fc3", 20 * 400, False),
            ("fc4", 400 * 784, False)],
}
DECODER = {"conv": {"dense", "convT1", "convT2"}, "mlp": {"fc3", "fc4"}}


def flops_per_image(model, what):
    """Matrix-product FLOPs (2 per multiply-add) per image: a training step is the forward
    pass plus the weight and input gradients (3x), less the first layer's input gradient,
    which neither side computes; sampling and IS samples run the decoder's forward pass."""
    if what == "train":
        return sum(2 * macs * (2 if first else 3) for _, macs, first in LAYERS[model])
    return sum(2 * macs for name, macs, _ in LAYERS[model] if name in DECODER[model])


def matmul_peak(threads, torch_device="cpu"):
    """The machine's fp32 and bf16 torch.mm GFLOP/s (None when PyTorch fails)."""
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "pytorch_vae.py"), "--matmul-peak",
                        "--threads", str(threads), "--device", torch_device], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v; returns (stdout, peak RSS in MiB)."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return p.stdout, rss


def run_vaekit(binary, model, epochs, batch, data, limit):
    out = tempfile.mkdtemp(prefix=f"vaekit-bench-{model}-")
    run = os.path.join(out, "run")
    cmd = [binary, "train", "--model", model, "--epochs", str(epochs), "--batch-size", str(batch),
           "--binarize", "none", "--data-dir", data, "--out", run]
    if limit:
        cmd += ["--limit", str(limit)]
    _, rss = timed(cmd)
    with open(os.path.join(run, "metrics.jsonl")) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    return {"neg_elbo": lines[-1]["test_neg_elbo"],
            "img_s": statistics.median(l["images_per_sec"] for l in lines), "rss": rss}


def run_torch(model, epochs, batch, data, limit, threads):
    cmd = [sys.executable, os.path.join(ROOT, "bench", "pytorch_vae.py"), "--model", model, "--epochs", str(epochs),
           "--batch-size", str(batch), "--data", data, "--threads", str(threads)]
    if limit:
        cmd += ["--limit", str(limit)]
    out, rss = timed(cmd)
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{\"epoch\"")]
    return {"neg_elbo": lines[-1]["test_neg_elbo"],
            "img_s": statistics.median(l["images_per_sec"] for l in lines), "rss": rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--conv-epochs", type=int, default=10)
    ap.add_argument("--mlp-epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--bench", action="store_true", help="time steps, sampling and IS instead of epochs")
    ap.add_argument("--steps", type=int, default=50, help="--bench: timed steps per repetition")
    ap.add_argument("--reps", type=int, default=5, help="--bench: repetitions")
    ap.add_argument("--rounds", type=int, default=3,
                    help="--bench: alternating vaekit/PyTorch rounds per model (ratios: median over rounds)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="--bench: both sides' precision (PyTorch: torch.autocast bf16)")
    ap.add_argument("--channels-last", action="store_true", help="--bench: PyTorch's conv model in NHWC")
    ap.add_argument("--models", default="conv,mlp", help="--bench: comma-separated models (conv, mlp, vaegan)")
    ap.add_argument("--baseline", default=None,
                    help="--bench: another vaekit binary to A/B against (vaegan: training img/s)")
    ap.add_argument("--gpu", action="store_true",
                    help="--bench: vaekit on --device wgpu, PyTorch on CUDA (bench/gpu.sh; without CUDA, "
                         "PyTorch stays on the CPU and the table says so)")
    args = ap.parse_args()

    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "vaekit-cli"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.environ.get("VAEKIT_BIN") or os.path.join(target, "release", "vaekit")
    print(f"CPU: {cpu_description()}", flush=True)
    if args.bench:
        return bench(binary, args)
    rows = []
    # conv: the article's batch of 100; mlp: pytorch/examples' batch of 128.
    for model, epochs, batch in [("conv", args.conv_epochs, 100), ("mlp", args.mlp_epochs, 128)]:
        if epochs <= 0:
            continue
        v = run_vaekit(binary, model, epochs, batch, args.data, args.limit)
        t = run_torch(model, epochs, batch, args.data, args.limit, args.threads)
        rows.append((model, epochs, v, t))

    print(f"data: {args.data}" + (f" (first {args.limit} training images)" if args.limit else ""))
    print("vaekit: burn Flex (CPU), release build | PyTorch: CPU, "
          f"{args.threads} threads | throughput: median img/s over training epochs")
    print(f"{'model':6} {'epochs':>6} | {'test neg-ELBO vaekit':>20} {'pytorch':>8} | "
          f"{'img/s vaekit':>12} {'pytorch':>8} {'ratio':>6} | {'peak RSS MiB vaekit':>19} {'pytorch':>8}")
    for model, epochs, v, t in rows:
        print(f"{model:6} {epochs:>6} | {v['neg_elbo']:>20.2f} {t['neg_elbo']:>8.2f} | "
              f"{v['img_s']:>12.0f} {t['img_s']:>8.0f} {v['img_s'] / t['img_s']:>5.2f}x | "
              f"{v['rss']:>19.0f} {t['rss']:>8.0f}")


def bench(binary, args):
    """`vaekit bench` and `pytorch_vae.py --bench`, one process each, alternating for
    `--rounds` rounds per model (the machine's load drifts; alternating spreads the drift over
    both), conv then mlp. Prints the median over rounds of each side's median, and the median
    and range of the per-round ratios."""
    common = ["--steps", str(args.steps), "--reps", str(args.reps)]
    keys = [("train_img_per_s", "training img/s", "train"), ("sample_img_per_s", "sampling img/s", "sample"),
            ("iw_samples_per_s", "IS samples/s", "sample")]
    vaekit_device, torch_device = "cpu", "cpu"
    if args.gpu:
        vaekit_device = "wgpu"
        torch_device = "cuda" if torch_has_cuda() else "cpu"
    peak = matmul_peak(args.threads, torch_device)
    peak_gflops = peak and peak[f"{args.precision}_gflops"]
    if peak:
        print(f"matrix-product peak (torch.mm 2048^2 on {torch_device}, {args.threads} threads): "
              f"fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 {peak['bf16_gflops']:.0f} GFLOP/s; "
              f"'% peak' below is of {args.precision}")
    else:
        print("no PyTorch: vaekit's figures only")
    torch_opts = ["--precision", args.precision, "--device", torch_device] + \
        (["--channels-last"] if args.channels_last else [])
    backend = "burn Flex (CPU)" if vaekit_device == "cpu" else f"burn {vaekit_device}"
    print(f"data: {args.data} | vaekit: {backend}, release build, --precision {args.precision} | "
          f"PyTorch {args.threads} threads, {' '.join(torch_opts)} | "
          f"{args.rounds} alternating rounds of {args.reps} repetitions ({args.steps} training steps each)")
    print(f"{'model':6} {'measure':16} | {'vaekit':>9} {'pytorch':>9} {'ratio':>6} {'(per-round range)':>18} | "
          f"{'% peak vaekit':>13} {'pytorch':>8}")
    batches = {"conv": 100, "mlp": 128}
    for model in args.models.split(","):
        if model == "vaegan":
            bench_vaegan(binary, args, peak)
            continue
        batch = batches[model]
        rounds = []
        for _ in range(args.rounds):
            v = run_json([binary, "bench", "--model", model, "--data-dir", args.data, "--json",
                          "--precision", args.precision, "--device", vaekit_device] + common)
            t = None
            if peak:
                t = run_json([sys.executable, os.path.join(ROOT, "bench", "pytorch_vae.py"), "--bench",
                              "--model", model, "--batch-size", str(batch), "--data", args.data,
                              "--threads", str(args.threads)] + common + torch_opts)
            rounds.append((v, t))
        for key, label, what in keys:
            a = statistics.median(v[key]["median"] for v, _ in rounds)
            if not peak:
                print(f"{model:6} {label:16} | {a:>9.0f}")
                continue
            b = statistics.median(t[key]["median"] for _, t in rounds)
            ratios = [v[key]["median"] / t[key]["median"] for v, t in rounds]
            share = ""
            if peak_gflops:
                f = flops_per_image(model, what) / 1e9 / peak_gflops * 100
                share = f" | {a * f:>12.1f}% {b * f:>7.1f}%"
            print(f"{model:6} {label:16} | {a:>9.0f} {b:>9.0f} {statistics.median(ratios):>5.2f}x "
                  f"{min(ratios):>8.2f}-{max(ratios):.2f}x{share}")
        a = max(v["peak_rss_mib"] for v, _ in rounds)
        if peak:
            b = max(t["peak_rss_mib"] for _, t in rounds)
            print(f"{model:6} {'peak RSS MiB':16} | {a:>9.0f} {b:>9.0f} {a / b:>5.2f}x")


def bench_vaegan(binary, args, peak):
    """The row `vaegan training img/s`: `vaekit bench --model vaegan` against
    bench/pytorch_vaegan.py --bench, alternating for --rounds rounds; with --baseline, the two
    vaekit binaries' `train` epochs of 2000 images in the same rounds."""
    steps = min(args.steps, 20)
    common = ["--steps", str(steps), "--reps", str(args.reps)]
    rounds = []
    for _ in range(args.rounds):
        v = run_json([binary, "bench", "--model", "vaegan", "--data-dir", args.data, "--json"] + common)
        t = None
        if peak:
            t = run_json([sys.executable, os.path.join(ROOT, "bench", "pytorch_vaegan.py"), "--bench",
                          "--data", args.data, "--threads", str(args.threads)] + common)
        ab = None
        if args.baseline:
            ab = (train_rate(binary, args.data), train_rate(args.baseline, args.data))
        rounds.append((v, t, ab))
    a = statistics.median(v["train_img_per_s"]["median"] for v, _, _ in rounds)
    if peak:
        b = statistics.median(t["train_img_per_s"]["median"] for _, t, _ in rounds)
        ratios = [v["train_img_per_s"]["median"] / t["train_img_per_s"]["median"] for v, t, _ in rounds]
        print(f"{'vaegan':6} {'training img/s':16} | {a:>9.0f} {b:>9.0f} {statistics.median(ratios):>5.2f}x "
              f"{min(ratios):>8.2f}-{max(ratios):.2f}x")
        rss = max(t["peak_rss_mib"] for _, t, _ in rounds)
        va = max(v["peak_rss_mib"] for v, _, _ in rounds)
        print(f"{'vaegan':6} {'peak RSS MiB':16} | {va:>9.0f} {rss:>9.0f} {va / rss:>5.2f}x")
    else:
        print(f"{'vaegan':6} {'training img/s':16} | {a:>9.0f}")
    if args.baseline:
        new = [ab[0] for _, _, ab in rounds]
        old = [ab[1] for _, _, ab in rounds]
        ratios = [n / o for n, o in zip(new, old)]
        print(f"vaegan A/B, `train --epochs 1 --limit 2000` img/s: this build {statistics.median(new):.0f}, "
              f"{args.baseline} {statistics.median(old):.0f}, ratio {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} rounds)")


def train_rate(binary, data, images=2000):
    """images_per_sec of one `train --model vaegan` epoch of `images` training images."""
    with tempfile.TemporaryDirectory(prefix="vaekit-ab-") as d:
        run = os.path.join(d, "run")
        p = subprocess.run([binary, "train", "--model", "vaegan", "--epochs", "1", "--limit", str(images),
                            "--data-dir", data, "--out", run], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"failed: {binary} train\n{p.stderr.strip()}")
        with open(os.path.join(run, "metrics.jsonl")) as f:
            return json.loads(f.readline())["images_per_sec"]


def run_json(cmd):
    """Runs cmd and returns its last stdout line as JSON; exits with its stderr on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def torch_has_cuda():
    p = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                       capture_output=True, text=True)
    return p.returncode == 0 and p.stdout.strip() == "True"


if __name__ == "__main__":
    main()
