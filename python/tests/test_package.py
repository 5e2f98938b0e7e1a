"""The Python package against the CLI: the same codes, samples and training runs; and every
bad input raises the right exception with the CLI's message."""

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import vaekit
from conftest import assert_close, cli, vaekit_bin


def test_encode_and_decode_equal_the_clis_codes_csv_and_decoded_png(runs, bars, tmp_path):
    _, x, y = bars
    for kind in ("conv", "cvae"):
        model = vaekit.load(runs[kind])
        cli("encode", "--run", runs[kind], "--split", "test", "--out", tmp_path / f"{kind}.csv")
        rows = list(csv.DictReader(open(tmp_path / f"{kind}.csv")))
        assert len(rows) == len(x)
        d = model.latent_dim
        want_mean = np.array([[float(r[f"mean_{j}"]) for j in range(d)] for r in rows])
        want_logvar = np.array([[float(r[f"logvar_{j}"]) for j in range(d)] for r in rows])
        mean, logvar = model.encode(x, y if model.classes else None)
        # The CSV holds each float's shortest round-trip text: equal to the last bit.
        assert np.array_equal(mean.astype(np.float64), want_mean.astype(np.float32).astype(np.float64))
        assert np.array_equal(logvar, want_logvar.astype(np.float32))
        # `vaekit decode` of that CSV: the package's decode of the same codes, pixel for pixel.
        png = tmp_path / f"{kind}.png"
        cli("decode", "--run", runs[kind], "--codes", tmp_path / f"{kind}.csv", "--out", png)
        got = model.decode(mean, y if model.classes else None)
        want = grid_cells(png, len(x), 28)
        assert np.array_equal(np.round(got[:, 0] * 255).astype(np.uint8), want)


def grid_cells(png, n, side):
    """The cells of a `vaekit sample` grid (border 2, ceil(sqrt(n)) columns), as uint8."""
    img = np.asarray(Image.open(png).convert("L"))
    cols = math.ceil(math.sqrt(n))
    cells = []
    for k in range(n):
        r, c = divmod(k, cols)
        y0, x0 = 2 + r * (side + 2), 2 + c * (side + 2)
        cells.append(img[y0 : y0 + side, x0 : x0 + side])
    return np.stack(cells)


@pytest.mark.parametrize("kind,extra,classes", [
    ("conv", [], None),
    ("hvae", ["--temperature", "0.7"], None),
    ("cvae", [], None),
    ("cvae", ["--class", "3"], 3),
])
def test_sample_equals_the_clis_png(kind, extra, classes, runs, tmp_path):
    model = vaekit.load(runs[kind])
    png = tmp_path / "s.png"
    cli("sample", "--run", runs[kind], "--n", 10, "--seed", 5, "--out", png, *extra)
    t = float(extra[1]) if extra[:1] == ["--temperature"] else 1.0
    got = model.sample(10, seed=5, temperature=t, classes=classes)
    assert got.shape == (10, 1, 28, 28) and got.dtype == np.float32
    want = grid_cells(png, 10, 28)
    assert np.array_equal(np.round(np.clip(got[:, 0], 0, 1) * 255).astype(np.uint8), want)
    # Other seeds give other samples; the same seed the same.
    assert not np.array_equal(got, model.sample(10, seed=6, temperature=t, classes=classes))
    assert np.array_equal(got, model.sample(10, seed=5, temperature=t, classes=classes))


def test_decode_and_reconstruct_agree_with_encode(runs, bars):
    _, x, _ = bars
    model = vaekit.load(runs["mlp"])
    mean, _ = model.encode(x)
    assert np.array_equal(model.reconstruct(x), model.decode(mean))
    r = model.reconstruct(x)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
    # float64 input is taken as float32.
    assert np.array_equal(model.encode(x.astype(np.float64))[0], mean)


def test_elbo_is_a_bound_below_the_importance_sampled_likelihood(runs, bars):
    _, x, _ = bars
    model = vaekit.load(runs["conv"])
    elbo = model.elbo(x, seed=0)
    assert elbo.shape == (len(x),) and np.all(np.isfinite(elbo))
    assert np.array_equal(elbo, model.elbo(x, seed=0))
    ll = model.log_likelihood(x, samples=200, seed=0)
    assert ll.mean() > elbo.mean()
    # One importance sample is an unbiased estimate of the ELBO.
    one = np.mean([model.log_likelihood(x, samples=1, seed=s).mean() for s in range(30)])
    assert abs(one - elbo.mean()) < 0.05 * abs(elbo.mean())


def test_eval_reports_the_mean_of_the_elbo_per_image(runs, bars):
    _, x, _ = bars
    import json

    report = json.loads(cli("eval", "--run", runs["conv"], "--split", "test", "--json"))
    assert report["images"] == len(x) and report["binarize"] == "none"
    neg = report["neg_elbo"]
    got = -vaekit.load(runs["conv"]).elbo(x, seed=report["seed"]).mean()
    assert abs(got - neg) < 1e-4 * abs(neg), (got, neg)


def timing_free(m):
    return {k: v for k, v in m.items() if not any(t in k for t in ("seconds", "per_s", "time"))}


def test_training_from_python_equals_the_cli(bars, tmp_path):
    data, _, _ = bars
    args = dict(data_dir=data, model="conv", latent=3, epochs=2, batch_size=50, seed=4, limit=200)
    run_py = vaekit.train(out=tmp_path / "py", **args)
    cli("train", "--out", tmp_path / "cli", "--data-dir", data, "--model", "conv", "--latent", 3,
        "--epochs", 2, "--batch-size", 50, "--seed", 4, "--limit", 200)
    a, b = vaekit.metrics(run_py), vaekit.metrics(tmp_path / "cli")
    assert len(a) == len(b) == 2
    assert [timing_free(m) for m in a] == [timing_free(m) for m in b]
    x = np.full((2, 1, 28, 28), 0.5, np.float32)
    assert np.array_equal(vaekit.load(run_py).encode(x)[0], vaekit.load(tmp_path / "cli").encode(x)[0])
    # Resume from Python, as `--resume RUN --epochs 3`.
    assert vaekit.train(resume=run_py, epochs=3) == str(run_py)
    assert [m["epoch"] for m in vaekit.metrics(run_py)] == [1, 2, 3]


def test_ctrl_c_stops_training_with_a_checkpoint_and_raises_keyboard_interrupt(bars, tmp_path):
    data, _, _ = bars
    run = tmp_path / "run"
    script = f"""
import sys, vaekit
try:
    vaekit.train(out={str(run)!r}, data_dir={str(data)!r}, epochs=10000, batch_size=10, seed=1)
except KeyboardInterrupt:
    print("KeyboardInterrupt raised", flush=True)
    sys.exit(3)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, (out, err)
    assert "KeyboardInterrupt raised" in out
    assert "checkpoint saved" in out, out
    model = vaekit.load(run)
    assert model.epoch >= 1


def test_bad_inputs_raise_the_right_exceptions(runs, bars, tmp_path):
    data, _, _ = bars
    model = vaekit.load(runs["conv"])
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match=r"x: expected shape \[N, 1, 28, 28\].*\[2, 28, 28\]"):
        model.encode(x[:, 0])
    with pytest.raises(TypeError, match="x: expected float32 values, got dtype"):
        model.encode(x.astype(np.int64))
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        model.encode([[0.0]])
    bad = x.copy()
    bad[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.encode(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.encode(x + 2)
    with pytest.raises(ValueError, match=r"z: expected shape \[N, 4\]"):
        model.decode(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="unconditional"):
        model.decode(np.zeros((3, 4), np.float32), classes=[1, 2, 3])
    with pytest.raises(ValueError, match="n: 0"):
        model.sample(0)
    cvae = vaekit.load(runs["cvae"])
    with pytest.raises(ValueError, match="needs the class"):
        cvae.encode(x)
    with pytest.raises(ValueError, match="12 is not a class"):
        cvae.encode(x, classes=[1, 12])
    with pytest.raises(ValueError, match="expected 2 classes"):
        cvae.encode(x, classes=[1, 2, 3])
    with pytest.raises(FileNotFoundError, match="no-such-run: not a vaekit run directory"):
        vaekit.load(tmp_path / "no-such-run")
    broken = tmp_path / "broken"
    shutil.copytree(runs["conv"], broken)
    weights = next(broken.glob("checkpoints/*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(vaekit.VaekitError, match="model.safetensors"):
        vaekit.load(broken)
    with pytest.raises(TypeError, match="--no-such-flag"):
        vaekit.train(out=tmp_path / "t", no_such_flag=3)
    with pytest.raises(TypeError, match="invalid value 'huge' for '--model"):
        vaekit.train(out=tmp_path / "t", model="huge")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        vaekit.train(out=tmp_path / "t", data_dir=tmp_path / "nowhere", epochs=1)
    with pytest.raises(ValueError, match="already holds a run"):
        vaekit.train(out=runs["conv"], data_dir=data, epochs=1)
