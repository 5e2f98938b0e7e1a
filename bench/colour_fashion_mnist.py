#!/usr/bin/env python3
"""Writes a colour image folder made from Fashion-MNIST, for trying vaekit's colour models where
no colour dataset is installed (no download needed: it reads Debian's dataset-fashion-mnist).

Every garment is padded to 32x32 and painted: a random foreground colour where the garment is,
over a random background colour, blended by the gray value, so the model has to learn shapes,
two colours per image and their shading. One subfolder per class, as `vaekit train --data-dir`
expects (it holds out every tenth image as the test split).

    pip install numpy pillow
    python3 bench/colour_fashion_mnist.py /tmp/colour-fashion --per-class 2000
    vaekit train --data-dir /tmp/colour-fashion --config configs/colour-32-logistic.toml
"""
import argparse
import colorsys
import gzip
import os

import numpy as np
from PIL import Image

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def random_colour(rng, light):
    h = rng.random()
    s = rng.uniform(0.4, 1.0)
    v = rng.uniform(0.7, 1.0) if light else rng.uniform(0.05, 0.45)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--per-class", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    images = read_idx(os.path.join(a.source, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.source, "train-labels-idx1-ubyte.gz"))
    rng = np.random.default_rng(a.seed)
    for c, name in enumerate(CLASSES):
        d = os.path.join(a.out, f"{c}-{name}")
        os.makedirs(d, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(labels == c)[: a.per_class]):
            alpha = np.pad(images[i], 2).astype(np.float64)[..., None] / 255.0  # 32x32x1
            # A light garment on a dark ground or the other way round, at random.
            light = rng.random() < 0.5
            fg, bg = random_colour(rng, light), random_colour(rng, not light)
            rgb = bg * (1 - alpha) + fg * alpha
            Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").save(os.path.join(d, f"{j:05d}.png"))
    print(f"wrote {len(CLASSES)} classes x {a.per_class} images of 32x32 RGB to {a.out}")


if __name__ == "__main__":
    main()
