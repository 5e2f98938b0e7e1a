"""Type stubs of the Rust extension (vaekit._vaekit)."""

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

Classes = int | Sequence[int] | npt.NDArray[np.integer] | None

class VaekitError(Exception):
    """A corrupt or unreadable file, a run that cannot be used, a failed training."""

class Model:
    """A trained model loaded from a run folder (see `vaekit.load`)."""

    @property
    def latent_dim(self) -> int: ...
    @property
    def image_shape(self) -> tuple[int, int, int]: ...
    @property
    def classes(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def run(self) -> str: ...
    @property
    def config_json(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def encode(
        self, x: npt.NDArray[np.floating], classes: Classes = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Posterior mean and log-variance `[N, latent]` of images `[N, C, H, W]` in [0, 1]."""
    def decode(self, z: npt.NDArray[np.floating], classes: Classes = None) -> npt.NDArray[np.float32]:
        """Mean images `[N, C, H, W]` in [0, 1] of codes `[N, latent]`."""
    def decode_params(self, z: npt.NDArray[np.floating], classes: Classes = None) -> npt.NDArray[np.float32]:
        """The parameters of p(x|z): logits or means, then any log-scale maps."""
    def prior_params(
        self, z2: npt.NDArray[np.floating] | None = None, classes: Classes = None
    ) -> list[npt.NDArray[np.float32]] | None:
        """A learned prior's parameters (see prior.onnx); None for N(0, I)."""
    def sample(
        self, n: int, seed: int = 0, temperature: float = 1.0, classes: Classes = None
    ) -> npt.NDArray[np.float32]:
        """`n` images from the prior, as `vaekit sample --seed` draws them."""
    def reconstruct(self, x: npt.NDArray[np.floating], classes: Classes = None) -> npt.NDArray[np.float32]:
        """Images decoded from their posterior means."""
    def elbo(
        self, x: npt.NDArray[np.floating], classes: Classes = None, seed: int = 0
    ) -> npt.NDArray[np.float64]:
        """The ELBO of each image, nats (one sampled z)."""
    def log_likelihood(
        self, x: npt.NDArray[np.floating], classes: Classes = None, samples: int = 1000, seed: int = 0
    ) -> npt.NDArray[np.float64]:
        """Importance-sampled log p(x) of each image, nats."""

def load(run: str) -> Model: ...
def metrics_json(run: str) -> list[str]: ...
def export(run: str, format: str, out: str, size: tuple[int, int] | None = None) -> list[str]: ...
def train_args(args: list[str]) -> str: ...
