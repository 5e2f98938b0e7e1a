"""A vaekit model as PyTorch modules, written by `vaekit export --format torch`.

Imports only torch and the standard library. The folder holds this file, `config.json` (the
run's config) and `weights.safetensors` (the parameters, under the same names as in vaekit's
checkpoint, dense weights in `nn.Linear`'s `[out, in]` layout)::

    import sys; sys.path.insert(0, "DIR")
    import vaekit_model
    model = vaekit_model.load("DIR")                  # a VAE (nn.Module), in eval mode
    mean, logvar = model.encode(x)                    # x: [N, C, H, W] in [0, 1]
    images = model.decode_mean(mean)                  # [N, C, H, W] in [0, 1]
    loss = model(x).mean()                            # the negative ELBO, nats per image
    loss.backward()                                   # fine-tune with any torch optimiser

Conditional models take `classes`, a LongTensor `[N]` of class indices, in every method.
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAE", "build", "load", "read_safetensors"]

LOG_2PI = math.log(2.0 * math.pi)


def read_safetensors(path):
    """The tensors of a safetensors file (float32 only), by name."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header of {n} bytes in a file of {len(data)}")
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, not F32")
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a : base + b]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"])
    return out


def _stack(width_in, widths):
    """Dense layers of the given widths, each from the previous width."""
    layers = nn.ModuleList()
    for w in widths:
        layers.append(nn.Linear(width_in, w))
        width_in = w
    return layers, width_in


def _with_condition(h, y):
    return h if y is None else torch.cat([h, y], 1)


class LabelBiases(nn.Module):
    """A learned bias per class on each decoder layer (empty unless the label enters every
    layer)."""

    def __init__(self, classes, widths, every_layer):
        super().__init__()
        on = classes > 0 and every_layer
        self.layers = nn.ModuleList(
            [nn.Linear(classes, w, bias=False) for w in widths] if on else []
        )

    def bias(self, i, y):
        if y is None or i >= len(self.layers):
            return None
        return self.layers[i](y)


def _bottleneck(image, channels):
    f = 2 ** len(channels)
    c = channels[-1] if channels else image["channels"]
    return c, image["height"] // f, image["width"] // f


class ConvEncoder(nn.Module):
    """Stride-2 convolutions with leaky ReLU, then dense heads to the mean and log-variance."""

    def __init__(self, image, latent, arch, classes):
        super().__init__()
        k, pad = arch["kernel"], arch["kernel"] // 2
        self.slope = arch["leaky_slope"]
        self.convs = nn.ModuleList()
        c_in = image["channels"]
        for c in arch["channels"]:
            self.convs.append(nn.Conv2d(c_in, c, k, stride=2, padding=pad))
            c_in = c
        flat = math.prod(_bottleneck(image, arch["channels"]))
        self.mean = nn.Linear(flat + classes, latent)
        self.logvar = nn.Linear(flat + classes, latent)

    def forward(self, x, y=None):
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), self.slope)
        h = _with_condition(h.flatten(1), y)
        return self.mean(h), self.logvar(h)


class MlpEncoder(nn.Module):
    """ReLU dense layers, then dense heads to the mean and log-variance."""

    def __init__(self, image, latent, arch, classes):
        super().__init__()
        numel = image["channels"] * image["height"] * image["width"]
        self.hidden, w = _stack(numel + classes, arch["hidden"])
        self.mean = nn.Linear(w, latent)
        self.logvar = nn.Linear(w, latent)

    def forward(self, x, y=None):
        h = _with_condition(x.flatten(1), y)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.mean(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """A dense layer to the smallest feature map, then layers that double the side: stride-2
    transposed convolutions, or nearest-neighbour doubling and a stride-1 convolution."""

    def __init__(self, image, latent, arch, maps, classes, every_layer):
        super().__init__()
        k, pad = arch["kernel"], arch["kernel"] // 2
        self.bottleneck = _bottleneck(image, arch["channels"])
        self.transposed = arch.get("upsample", "transposed") == "transposed"
        outs = list(reversed(arch["channels"]))[1:] + [image["channels"] * maps]
        self.dense = nn.Linear(latent + classes, math.prod(self.bottleneck))
        self.convs = nn.ModuleList()
        self.resize = nn.ModuleList()
        c_in = self.bottleneck[0]
        for c in outs:
            if self.transposed:
                self.convs.append(
                    nn.ConvTranspose2d(c_in, c, k, stride=2, padding=pad, output_padding=1)
                )
            else:
                self.resize.append(nn.Conv2d(c_in, c, k, padding=pad))
            c_in = c
        self.labels = LabelBiases(classes, outs, every_layer)
        self.layers = len(outs)

    def forward(self, z, y=None, size=None):
        if size is not None and tuple(size) != self.size():
            raise ValueError(f"this decoder makes only its training size {self.size()}, not {tuple(size)}")
        x = F.relu(self.dense(_with_condition(z, y)))
        x = x.reshape(-1, *self.bottleneck)
        for i in range(self.layers):
            if self.transposed:
                x = self.convs[i](x)
            else:
                x = self.resize[i](F.interpolate(x, scale_factor=2, mode="nearest"))
            b = self.labels.bias(i, y)
            if b is not None:
                x = x + b[:, :, None, None]
            if i + 1 < self.layers:
                x = F.relu(x)
        return x

    def size(self):
        f = 2**self.layers
        return (self.bottleneck[1] * f, self.bottleneck[2] * f)


class MlpDecoder(nn.Module):
    """ReLU dense layers, then one dense layer to every map of every pixel."""

    def __init__(self, image, latent, arch, maps, classes, every_layer):
        super().__init__()
        self.image = (image["channels"], image["height"], image["width"])
        self.maps = maps
        numel = math.prod(self.image)
        widths = list(reversed(arch["hidden"]))
        self.hidden, w = _stack(latent + classes, widths)
        self.out = nn.Linear(w, numel * maps)
        self.labels = LabelBiases(classes, widths + [numel * maps], every_layer)

    def forward(self, z, y=None, size=None):
        if size is not None and tuple(size) != self.image[1:]:
            raise ValueError(f"this decoder makes only its training size {self.image[1:]}, not {tuple(size)}")
        h = _with_condition(z, y)
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            b = self.labels.bias(i, y)
            h = F.relu(h if b is None else h + b)
        out = self.out(h)
        b = self.labels.bias(len(self.hidden), y)
        if b is not None:
            out = out + b
        c, hh, w = self.image
        return out.reshape(-1, c * self.maps, hh, w)


def cppn_coordinates(h, w, scale, device=None):
    """(x, y, r) of every pixel of an h x w image, row-major, `[h * w, 3]`: the shorter side
    spans [-scale, scale], each pixel at the centre of its cell (computed in float64, as
    vaekit does)."""
    m = float(max(min(h, w), 1))
    i = torch.arange(h, dtype=torch.float64, device=device)
    j = torch.arange(w, dtype=torch.float64, device=device)
    y = scale * (2.0 * (i + 0.5) - h) / m
    x = scale * (2.0 * (j + 0.5) - w) / m
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    r = torch.sqrt(xx * xx + yy * yy)
    return torch.stack([xx, yy, r], -1).reshape(h * w, 3).float()


class CppnDecoder(nn.Module):
    """hardmaru's CPPN: each pixel's maps are a tanh network of its coordinates and z, so it
    renders at any size (`size=(h, w)`)."""

    def __init__(self, image, latent, arch, maps, classes, every_layer):
        super().__init__()
        hidden, layers = arch["hidden"], arch["layers"]
        self.z = nn.Linear(latent + classes, hidden)
        self.x = nn.Linear(1, hidden, bias=False)
        self.y = nn.Linear(1, hidden, bias=False)
        self.r = nn.Linear(1, hidden, bias=False)
        self.hidden = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers)])
        self.out = nn.Linear(hidden, image["channels"] * maps)
        self.labels = LabelBiases(classes, [hidden] * layers + [image["channels"] * maps], every_layer)
        self.training_size = (image["height"], image["width"])
        self.scale = arch["scale"]
        self.z_scale = arch["z_scale"]

    def forward(self, z, y=None, size=None):
        h, w = size if size is not None else self.training_size
        c = cppn_coordinates(h, w, self.scale, z.device).to(z.dtype)
        hz = self.z(_with_condition(z * self.z_scale, y))  # [N, hidden]
        hxy = self.x(c[:, 0:1]) + self.y(c[:, 1:2]) + self.r(c[:, 2:3])  # [P, hidden]
        a = torch.tanh(hz[:, None, :] + hxy[None])  # [N, P, hidden]
        for i, layer in enumerate(self.hidden):
            d = layer(a)
            b = self.labels.bias(i, y)
            a = torch.tanh(d if b is None else d + b[:, None, :])
        out = self.out(a)
        b = self.labels.bias(len(self.hidden), y)
        if b is not None:
            out = out + b[:, None, :]
        return out.reshape(-1, h, w, out.shape[-1]).permute(0, 3, 1, 2)

    def size(self):
        return self.training_size


class GlobalScale(nn.Module):
    """One learned log standard deviation per image channel (`gaussian-global`)."""

    def __init__(self, channels):
        super().__init__()
        self.log_std = nn.Parameter(torch.zeros(channels))


def discretized_logistic_nll(mean, log_scale, x):
    """-log P(x) of 8-bit pixels under a logistic discretised into 256 bins (PixelCNN++),
    per pixel; `x` in [0, 1], `mean` on [-1, 1]."""
    half_bin = 1.0 / 255.0
    xs = x * 2.0 - 1.0
    log_s = log_scale.clamp_min(-7.0)
    inv_s = torch.exp(-log_s)
    centred = xs - mean
    plus = (centred + half_bin) * inv_s
    minus = (centred - half_bin) * inv_s
    log_cdf_plus = F.logsigmoid(plus)
    log_one_minus_cdf_min = F.logsigmoid(-minus)
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = centred * inv_s
    log_mid = mid - log_s + 2.0 * F.logsigmoid(-mid) + math.log(2.0 / 255.0)
    inner = torch.where(delta > 1e-5, delta.clamp_min(1e-12).log(), log_mid)
    inner = torch.where(xs < -0.999, log_cdf_plus, inner)
    inner = torch.where(xs > 0.999, log_one_minus_cdf_min, inner)
    return -inner


class Likelihood(nn.Module):
    """p(x|z) from the decoder's maps."""

    def __init__(self, spec, channels):
        super().__init__()
        self.kind = spec["kind"]
        self.std = spec.get("std")
        self.channels = channels
        self.scale = GlobalScale(channels) if self.kind == "gaussian-global" else None

    def network_maps(self):
        return 2 if self.kind in ("gaussian-learned", "logistic") else 1

    def params(self, maps):
        """The distribution's parameters: the maps, with the global log-std maps appended."""
        if self.scale is None:
            return maps
        n, _, h, w = maps.shape
        s = self.scale.log_std.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        return torch.cat([maps, s], 1)

    def mean_image(self, params):
        m = params[:, : self.channels]
        if self.kind == "logistic":
            return ((m + 1.0) * 0.5).clamp(0.0, 1.0)
        return torch.sigmoid(m)

    def nll(self, params, x):
        """-log p(x|params) per image, summed over pixels."""
        c = self.channels
        if self.kind == "bernoulli":
            per = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        elif self.kind == "gaussian":
            d = (x - torch.sigmoid(params)) / self.std
            per = 0.5 * d * d + math.log(self.std) + 0.5 * LOG_2PI
        elif self.kind in ("gaussian-learned", "gaussian-global"):
            log_s = params[:, c:].clamp(-7.0, 2.0)
            d = (x - torch.sigmoid(params[:, :c])) * torch.exp(-log_s)
            per = 0.5 * d * d + log_s + 0.5 * LOG_2PI
        elif self.kind == "logistic":
            per = discretized_logistic_nll(params[:, :c], params[:, c:], x)
        else:
            raise ValueError(f"unknown likelihood {self.kind}")
        return per.flatten(1).sum(1)


def _gaussian_log_prob(z, mean, logvar):
    """log N(z; mean, exp(logvar)) per dimension."""
    d = z - mean
    return -0.5 * (d * d * torch.exp(-logvar) + logvar + LOG_2PI)


def _kl_standard(mean, logvar):
    return 0.5 * (torch.exp(logvar) + mean * mean - 1.0 - logvar).sum(1)


class TopLatent(nn.Module):
    """The hierarchical VAE's second layer: q(z2|z1) and p(z1|z2), tanh MLPs with Gaussian
    heads."""

    def __init__(self, below, latent, hidden):
        super().__init__()
        self.up, w_up = _stack(below, hidden)
        self.up_mean = nn.Linear(w_up, latent)
        self.up_logvar = nn.Linear(w_up, latent)
        self.down, w_down = _stack(latent, list(reversed(hidden)))
        self.down_mean = nn.Linear(w_down, below)
        self.down_logvar = nn.Linear(w_down, below)
        self.latent = latent

    @staticmethod
    def _head(layers, mean, logvar, x):
        for layer in layers:
            x = torch.tanh(layer(x))
        return mean(x), logvar(x)

    def encode(self, z1):
        """q(z2|z1): mean, log-variance."""
        return self._head(self.up, self.up_mean, self.up_logvar, z1)

    def prior(self, z2):
        """p(z1|z2): mean, log-variance."""
        return self._head(self.down, self.down_mean, self.down_logvar, z2)


class ClassPrior(nn.Module):
    """A learned mixture of `components` diagonal Gaussians per class."""

    def __init__(self, latent, classes, components):
        super().__init__()
        k = max(components, 1)
        self.mean = nn.Linear(classes, k * latent, bias=False)
        self.logvar = nn.Linear(classes, k * latent, bias=False)
        self.weight = nn.Linear(classes, k, bias=False) if k > 1 else None
        self.k, self.latent = k, latent

    def parameters_of(self, y):
        """Means and log-variances `[N, K, latent]` and log mixture weights `[N, K]`."""
        n = y.shape[0]
        mean = self.mean(y).reshape(n, self.k, self.latent)
        logvar = self.logvar(y).reshape(n, self.k, self.latent)
        if self.weight is None:
            log_w = torch.zeros(n, 1, dtype=y.dtype, device=y.device)
        else:
            log_w = torch.log_softmax(self.weight(y), 1)
        return mean, logvar, log_w

    def log_prob(self, z, y):
        mean, logvar, log_w = self.parameters_of(y)
        per = _gaussian_log_prob(z[:, None, :], mean, logvar).sum(2) + log_w
        return torch.logsumexp(per, 1)


class VAE(nn.Module):
    """Encoder, decoder, likelihood and prior of a vaekit model."""

    def __init__(self, config):
        super().__init__()
        m = config["model"] if "model" in config else config
        self.config = config
        image, latent, arch = m["image"], m["latent_dim"], m["architecture"]
        classes = m.get("classes", 0)
        cond = m.get("conditioning") or {}
        every_layer = classes > 0 and cond.get("decoder", "beside_z") == "every_layer"
        self.classes, self.latent = classes, latent
        self.image = (image["channels"], image["height"], image["width"])
        self.likelihood = Likelihood(m["likelihood"], image["channels"])
        maps = self.likelihood.network_maps()
        if arch["kind"] == "conv":
            self.encoder = ConvEncoder(image, latent, arch, classes)
        elif arch["kind"] == "mlp":
            self.encoder = MlpEncoder(image, latent, arch, classes)
        else:
            raise ValueError(f"unknown architecture {arch['kind']}")
        dec = m.get("decoder")
        if dec is not None and dec["kind"] == "cppn":
            self.decoder = CppnDecoder(image, latent, dec, maps, classes, every_layer)
        elif arch["kind"] == "conv":
            self.decoder = ConvDecoder(image, latent, arch, maps, classes, every_layer)
        else:
            self.decoder = MlpDecoder(image, latent, arch, maps, classes, every_layer)
        top = m.get("top")
        if top is not None:
            self.prior = TopLatent(latent, top["latent_dim"], top["hidden"])
        elif classes > 0 and cond.get("prior", "standard") == "learned":
            self.prior = ClassPrior(latent, classes, cond.get("components", 1))
        else:
            self.prior = None

    def condition(self, classes, like):
        """The one-hot rows of `classes` (a LongTensor `[N]`); None for an unconditional
        model."""
        if self.classes == 0:
            return None
        if classes is None:
            raise ValueError(f"a conditional model ({self.classes} classes) needs classes")
        return F.one_hot(torch.as_tensor(classes, device=like.device).long(), self.classes).to(like.dtype)

    def encode(self, x, classes=None):
        """q(z|x): mean and log-variance `[N, latent]` of images `[N, C, H, W]` in [0, 1]."""
        return self.encoder(x, self.condition(classes, x))

    def decode(self, z, classes=None, size=None):
        """The parameters of p(x|z): logits or means, then log-scales `[N, C * k, H, W]`."""
        return self.likelihood.params(self.decoder(z, self.condition(classes, z), size))

    def decode_mean(self, z, classes=None, size=None):
        """The mean image `[N, C, H, W]` in [0, 1]."""
        return self.likelihood.mean_image(self.decode(z, classes, size))

    def reconstruct(self, x, classes=None):
        """Encodes and decodes the posterior means."""
        mean, _ = self.encode(x, classes)
        return self.decode_mean(mean, classes)

    def prior_sample(self, n, classes=None, generator=None):
        """z `[n, latent]` from the prior."""
        like = next(self.parameters())
        eps = torch.randn(n, self.latent, generator=generator, dtype=like.dtype, device=like.device)
        if isinstance(self.prior, TopLatent):
            z2 = torch.randn(n, self.prior.latent, generator=generator, dtype=like.dtype, device=like.device)
            mean, logvar = self.prior.prior(z2)
            return mean + torch.exp(0.5 * logvar) * eps
        if isinstance(self.prior, ClassPrior):
            mean, logvar, log_w = self.prior.parameters_of(self.condition(classes, like))
            pick = torch.multinomial(log_w.exp(), 1, generator=generator)[:, 0]
            rows = torch.arange(n, device=like.device)
            return mean[rows, pick] + torch.exp(0.5 * logvar[rows, pick]) * eps
        return eps

    def sample(self, n, classes=None, generator=None):
        """`n` mean images decoded from prior draws."""
        return self.decode_mean(self.prior_sample(n, classes, generator), classes)

    def neg_elbo(self, x, classes=None):
        """The negative ELBO per image (one sampled z), in nats: the training loss."""
        y = self.condition(classes, x)
        mean, logvar = self.encoder(x, y)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        if self.prior is None:
            kl = _kl_standard(mean, logvar)
        elif isinstance(self.prior, TopLatent):
            m2, lv2 = self.prior.encode(z)
            z2 = m2 + torch.exp(0.5 * lv2) * torch.randn_like(m2)
            pm, plv = self.prior.prior(z2)
            kl = (_gaussian_log_prob(z, mean, logvar) - _gaussian_log_prob(z, pm, plv)).sum(1)
            kl = kl + _kl_standard(m2, lv2)
        elif self.prior.k == 1:
            pm, plv, _ = self.prior.parameters_of(y)
            pm, plv = pm[:, 0], plv[:, 0]
            kl = 0.5 * (plv - logvar + (torch.exp(logvar) + (mean - pm) ** 2) * torch.exp(-plv) - 1.0).sum(1)
        else:
            kl = _gaussian_log_prob(z, mean, logvar).sum(1) - self.prior.log_prob(z, y)
        params = self.likelihood.params(self.decoder(z, y))
        return self.likelihood.nll(params, x) + kl

    def forward(self, x, classes=None):
        """The negative ELBO per image (see `neg_elbo`)."""
        return self.neg_elbo(x, classes)


def build(config):
    """The untrained VAE a vaekit config (the run's `config.json` as a dict) describes."""
    return VAE(config)


def load(folder, map_location="cpu"):
    """The exported model in `folder` (`config.json`, `weights.safetensors`), in eval mode."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = build(config)
    state = read_safetensors(os.path.join(folder, "weights.safetensors"))
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
