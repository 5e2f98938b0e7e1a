"""ONNX and PyTorch exports of every model kind reproduce vaekit's own outputs (1e-5, fp32),
checked by independent implementations: onnxruntime and onnx.checker, and torch."""

import importlib.util
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import vaekit
from conftest import KINDS, assert_close, cli

TOL = 1e-5


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def case(model, inputs, n=7):
    x, y, rng = inputs
    x, y = x[:n], y[:n]
    z = rng.standard_normal((n, model.latent_dim)).astype(np.float32)
    classes = y if model.classes else None
    return x, classes, z


@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_reproduces_vaekit(kind, runs, inputs, tmp_path):
    model = vaekit.load(runs[kind])
    out = tmp_path / "onnx"
    files = vaekit.export(runs[kind], "onnx", out)
    names = sorted(p.split("/")[-1] for p in files)
    m = model.config["model"]
    learned_prior = bool(m.get("top")) or (
        m.get("classes", 0) > 0 and (m.get("conditioning") or {}).get("prior") == "learned"
    )
    assert names == sorted(["encoder.onnx", "decoder.onnx"] + (["prior.onnx"] if learned_prior else []))
    for f in files:
        m = onnx.load(f)
        onnx.checker.check_model(m, full_check=True)
        meta = {p.key: p.value for p in m.metadata_props}
        assert meta["vaekit_version"] == vaekit.__version__
        assert json.loads(meta["vaekit_config"]) == model.config
    for n in (1, 7):  # the batch dimension is free
        x, classes, z = case(model, inputs, n)
        feeds = {"x": x} | ({"class": classes} if classes is not None else {})
        mean, logvar = session(out / "encoder.onnx").run(["mean", "logvar"], feeds)
        want_mean, want_logvar = model.encode(x, classes)
        assert_close(mean, want_mean, TOL, f"{kind} encoder mean")
        assert_close(logvar, want_logvar, TOL, f"{kind} encoder logvar")
        dec = session(out / "decoder.onnx")
        outputs = [o.name for o in dec.get_outputs()]
        feeds = {"z": z} | ({"class": classes} if classes is not None else {})
        got = dict(zip(outputs, dec.run(outputs, feeds)))
        assert_close(got["mean"], model.decode(z, classes), TOL, f"{kind} decoder mean")
        params = model.decode_params(z, classes)
        c = model.image_shape[0]
        if params.shape[1] == 2 * c:
            assert_close(got["log_scale"], params[:, c:], TOL, f"{kind} decoder log_scale")
        else:
            assert outputs == ["mean"]
    if learned_prior:
        check_prior_onnx(model, out / "prior.onnx", inputs)


def check_prior_onnx(model, path, inputs):
    _, y, rng = inputs
    p = session(path)
    outputs = [o.name for o in p.get_outputs()]
    if model.config["model"].get("top"):
        z2 = rng.standard_normal((5, model.config["model"]["top"]["latent_dim"])).astype(np.float32)
        got = p.run(outputs, {"z2": z2})
        want = model.prior_params(z2=z2)
    else:
        got = p.run(outputs, {"class": y[:5]})
        want = model.prior_params(classes=y[:5])
        if want[2].shape[1] == 1:  # one component: no weights to give
            want = want[:2]
    assert len(got) == len(want)
    for name, g, w in zip(outputs, got, want):
        assert_close(g, w, TOL, f"prior {name}")


def test_cppn_renders_at_an_export_size_and_other_decoders_refuse_one(runs, inputs, tmp_path):
    model = vaekit.load(runs["cppn"])
    vaekit.export(runs["cppn"], "onnx", tmp_path / "big", size=(40, 56))
    _, _, z = case(model, inputs, 3)
    (mean,) = session(tmp_path / "big" / "decoder.onnx").run(["mean"], {"z": z})
    assert mean.shape == (3, 1, 40, 56)
    # The torch module renders any size; the two agree at the export's size.
    mod = torch_module(runs["cppn"], tmp_path / "t")
    with torch.no_grad():
        want = mod.decode_mean(torch.from_numpy(z), size=(40, 56)).numpy()
    assert_close(mean, want, TOL, "cppn at 56x40")
    with pytest.raises(ValueError, match="training size"):
        vaekit.export(runs["conv"], "onnx", tmp_path / "no", size=(40, 56))


_loaded = 0


def torch_module(run, out):
    """Exports `run` to torch in `out` and imports the module file as a fresh module."""
    global _loaded
    vaekit.export(run, "torch", out)
    _loaded += 1
    spec = importlib.util.spec_from_file_location(f"vaekit_model_{_loaded}", out / "vaekit_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load(str(out))


@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_module_reproduces_vaekit_and_trains(kind, runs, inputs, tmp_path):
    model = vaekit.load(runs[kind])
    mod = torch_module(runs[kind], tmp_path / "torch")
    src = (tmp_path / "torch" / "vaekit_model.py").read_text()
    imports = {l.split()[1].split(".")[0] for l in src.splitlines() if l.startswith(("import ", "from "))}
    assert imports <= {"json", "math", "os", "struct", "torch"}, imports
    x, classes, z = case(model, inputs)
    tc = torch.from_numpy(classes) if classes is not None else None
    with torch.no_grad():
        mean, logvar = mod.encode(torch.from_numpy(x), tc)
        want_mean, want_logvar = model.encode(x, classes)
        assert_close(mean.numpy(), want_mean, TOL, f"{kind} torch mean")
        assert_close(logvar.numpy(), want_logvar, TOL, f"{kind} torch logvar")
        zt = torch.from_numpy(z)
        assert_close(mod.decode(zt, tc).numpy(), model.decode_params(z, classes), TOL, f"{kind} torch maps")
        assert_close(mod.decode_mean(zt, tc).numpy(), model.decode(z, classes), TOL, f"{kind} torch mean image")
        # The module's negative ELBO is vaekit's on average (one sampled z per image each):
        # the means of 300 draws each agree within four standard errors.
        torch.manual_seed(0)
        t = torch.stack([mod(torch.from_numpy(x), tc) for _ in range(300)]).numpy()
        v = -np.stack([model.elbo(x, classes, seed=s) for s in range(300)])
        se = np.sqrt((t.var(0) + v.var(0)) / 300)
        assert np.all(np.abs(t.mean(0) - v.mean(0)) <= 4 * se + 1e-3 * np.abs(v.mean(0))), (
            t.mean(0), v.mean(0), se)
    # One optimiser step: gradients flow and the weights change.
    mod.train()
    before = {k: v.clone() for k, v in mod.state_dict().items()}
    opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
    loss = mod(torch.from_numpy(x), tc).mean()
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    after = mod.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {changed} changed"
    assert not any(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


def test_export_from_the_cli_writes_the_same_files(runs, tmp_path):
    out = cli("export", "--run", runs["conv"], "--format", "onnx", "--out", tmp_path / "a")
    assert "encoder.onnx" in out and "decoder.onnx" in out
    vaekit.export(runs["conv"], "onnx", tmp_path / "b")
    for f in ("encoder.onnx", "decoder.onnx"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_export_refuses_the_run_folder_and_bad_formats(runs, tmp_path):
    with pytest.raises(vaekit.VaekitError, match="run's own folder"):
        vaekit.export(runs["conv"], "torch", runs["conv"])
    with pytest.raises(ValueError, match="format"):
        vaekit.export(runs["conv"], "tflite", tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        vaekit.export(tmp_path / "no-such-run", "onnx", tmp_path / "o")
