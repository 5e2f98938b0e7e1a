"""vaekit from Python: variational autoencoders trained and run by vaekit's Rust core.

    import vaekit
    run = vaekit.train(out="runs/digits", data_dir="digits", epochs=5)   # as `vaekit train`
    model = vaekit.load(run)
    mean, logvar = model.encode(x)              # x: float32 [N, C, H, W] in [0, 1]
    images = model.decode(mean)                 # float32 [N, C, H, W] in [0, 1]
    samples = model.sample(64, seed=0)          # as `vaekit sample --n 64 --seed 0`
    vaekit.metrics(run)                         # one dict per epoch
    vaekit.export(run, "onnx", "out/onnx")      # encoder.onnx, decoder.onnx (, prior.onnx)

Errors are exceptions carrying the CLI's one-line messages: `FileNotFoundError` for a missing
run or dataset, `ValueError` for a wrong shape, value or setting, `TypeError` for a wrong dtype
or an unknown option, `vaekit.VaekitError` for a corrupt file or a failed run.
"""

import json
import os

from ._vaekit import Model, VaekitError, __version__
from . import _vaekit

__all__ = ["Model", "VaekitError", "export", "load", "metrics", "train", "__version__"]


def load(run):
    """The model of a run folder (its current checkpoint), on the CPU."""
    return _vaekit.load(os.fspath(run))


def _flag(name, value):
    flag = "--" + name.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return [flag, str(value)]


def train(out=None, *, resume=None, device=None, precision=None, **options):
    """Trains a model as `vaekit train` does, with its options and defaults: each keyword is
    the flag of the same name (`data_dir="digits"` is `--data-dir digits`, `no_equilibrium=True`
    is `--no-equilibrium`). `resume=RUN` continues a run (then only `epochs` and
    `loader_threads` may be given). Progress is shown on stderr; Ctrl-C stops after the current
    step with a checkpoint, then raises KeyboardInterrupt. Returns the run folder.
    """
    args = ["vaekit"]
    args += _flag("device", device)
    args += _flag("precision", precision)
    args.append("train")
    if out is not None:
        args += ["--out", os.fspath(out)]
    if resume is not None:
        args += ["--resume", os.fspath(resume)]
    for name, value in options.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        args += _flag(name, value)
    return _vaekit.train_args(args)


def metrics(run):
    """The metrics of every finished epoch of a run (`metrics.jsonl`), one dict per epoch."""
    return [json.loads(line) for line in _vaekit.metrics_json(os.fspath(run))]


def export(run, format, out, size=None):
    """Exports a run as `vaekit export` does: `format` "onnx" (encoder.onnx, decoder.onnx and,
    for a learned prior, prior.onnx) or "torch" (vaekit_model.py, weights.safetensors,
    config.json), into the folder `out`. `size=(height, width)`: the size an ONNX CPPN decoder
    renders. Returns the paths written."""
    return _vaekit.export(os.fspath(run), format, os.fspath(out), size)
