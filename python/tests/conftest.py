"""Shared fixtures: the `vaekit` binary, a small generated dataset, and one trained run of every
model kind (trained through the Python package, one epoch on a few hundred images)."""

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import vaekit

ROOT = Path(__file__).resolve().parents[2]


def vaekit_bin():
    """The CLI binary: $VAEKIT_BIN, or the newest build in the target folder."""
    if os.environ.get("VAEKIT_BIN"):
        return os.environ["VAEKIT_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    found = [p for p in (target / "release" / "vaekit", target / "debug" / "vaekit") if p.exists()]
    if not found:
        pytest.fail("no vaekit binary: build it (cargo build -p vaekit-cli) or set VAEKIT_BIN")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def cli(*args, cwd=None):
    """Runs the CLI; returns its stdout, failing the test with its stderr if it fails."""
    r = subprocess.run([vaekit_bin(), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        pytest.fail(f"vaekit {' '.join(map(str, args))} exited {r.returncode}: {r.stderr}")
    return r.stdout


def read_idx(path):
    """An IDX file (gzipped) as a numpy array."""
    data = gzip.open(path).read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


@pytest.fixture(scope="session")
def bars(tmp_path_factory):
    """The generated bars dataset (28x28 gray, 10 classes): its folder, and its test images
    (float32 in [0, 1]) and labels."""
    d = tmp_path_factory.mktemp("bars")
    cli("data", "bars", "--dir", d, "--train", 300, "--test", 40, "--seed", 1)
    x = read_idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0
    y = read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return d, x, y


# Every model kind, with the layers and likelihoods each exercises.
KINDS = {
    "conv": dict(model="conv", latent=4),
    "conv-resize-cvae": dict(
        model="cvae", upsample="resize", label_at="every-layer", prior_components=1,
        likelihood="gaussian-global",
    ),
    "mlp": dict(model="mlp", latent=3, likelihood="gaussian-learned"),
    "cppn": dict(model="conv", decoder="cppn", likelihood="logistic", latent=5),
    "cppn-cvae": dict(model="cvae", arch="mlp", decoder="cppn", label_at="every-layer"),
    "cvae": dict(model="cvae"),
    "cvae-mlp": dict(model="cvae", arch="mlp", label_at="every-layer", class_prior="standard",
                     likelihood="gaussian"),
    "hvae": dict(model="hvae", arch="mlp", likelihood="gaussian-global"),
    "iwae": dict(model="iwae", k=3),
    "vaegan": dict(model="vaegan", latent=6),
}


@pytest.fixture(scope="session")
def runs(bars, tmp_path_factory):
    """One trained run per kind, by name."""
    data, _, _ = bars
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, opts in KINDS.items():
        out[name] = vaekit.train(out=root / name, data_dir=data, epochs=1, batch_size=50,
                                 seed=2, **opts)
    return out


@pytest.fixture()
def inputs(bars):
    """Fixed inputs: test images, their classes, and codes."""
    _, x, y = bars
    rng = np.random.default_rng(7)
    return x[:7], y[:7], rng


def assert_close(got, want, tol=1e-5, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    worst = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
    assert worst <= tol, f"{what}: differs by {worst} (tolerance {tol})"


def copy_run(run, dest):
    shutil.copytree(run, dest)
    return dest
