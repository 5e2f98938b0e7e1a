#!/usr/bin/env python3
"""Decoding speed of one model three ways, in one run on the same threads: the vaekit Python
package (`model.decode`, numpy in and out), the same run exported to PyTorch (eager,
`torch.inference_mode`, `decode_mean`) and to ONNX (onnxruntime, all graph optimisations), at
batch 1 and 256. Prints images per second (median of rounds) and each side's ratio to vaekit.

    pip install ./python torch onnxruntime
    python bench/python_decode.py --run runs/fashion-mnist-conv [--threads 2] [--rounds 5]

Each measurement calls its decoder repeatedly for at least --seconds and counts images.
"""

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time


def cpu_name():
    """The CPU's model name and the vector extensions that decide vaekit's kernels."""
    name, flags = platform.processor() or "unknown CPU", []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = line.split(":", 1)[1].split()
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in have]
                break
    except OSError:
        pass
    return f"{name} (flags: {' '.join(flags) or 'none of avx2 fma avx512f'})"


def rate(fn, batch, seconds):
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a vaekit run folder")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--batches", default="1,256")
    a = ap.parse_args()
    # vaekit's CPU threads (rayon) are set before the package starts them.
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    import numpy as np
    import onnxruntime as ort
    import torch

    import vaekit

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = vaekit.load(a.run)
    tmp = tempfile.mkdtemp(prefix="vaekit-bench-")
    vaekit.export(a.run, "onnx", os.path.join(tmp, "onnx"))
    vaekit.export(a.run, "torch", os.path.join(tmp, "torch"))
    spec = importlib.util.spec_from_file_location("vaekit_model", os.path.join(tmp, "torch", "vaekit_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tmodel = module.load(os.path.join(tmp, "torch"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(os.path.join(tmp, "onnx", "decoder.onnx"), opts, providers=["CPUExecutionProvider"])
    classes = model.classes

    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; {a.threads} threads each side")
    print(f"# vaekit {vaekit.__version__}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"# run {a.run}: {model!r}")
    print("| batch | decoder | images/s | ratio to vaekit | per-round range |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in a.batches.split(",")]:
        z = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
        y = (np.arange(batch) % classes).astype(np.int64) if classes else None
        zt = torch.from_numpy(z)
        yt = torch.from_numpy(y) if classes else None
        feeds = {"z": z} | ({"class": y} if classes else {})

        def torch_decode():
            with torch.inference_mode():
                tmodel.decode_mean(zt, yt).numpy()

        sides = {
            "vaekit (Python package)": lambda: model.decode(z, y),
            "PyTorch eager (exported)": torch_decode,
            "onnxruntime (exported)": lambda: sess.run(["mean"], feeds),
        }
        rates = {k: [] for k in sides}
        for _ in range(a.rounds):  # alternate the sides within each round
            for k, fn in sides.items():
                rates[k].append(rate(fn, batch, a.seconds))
        base = statistics.median(rates["vaekit (Python package)"])
        for k, r in rates.items():
            med = statistics.median(r)
            ratios = [v / b for v, b in zip(r, rates["vaekit (Python package)"])]
            print(f"| {batch} | {k} | {med:,.0f} | {med / base:.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
