import os
from typing import Any

from ._vaekit import Model as Model, VaekitError as VaekitError, __version__ as __version__

def load(run: str | os.PathLike[str]) -> Model: ...
def train(
    out: str | os.PathLike[str] | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    precision: str | None = None,
    **options: Any,
) -> str: ...
def metrics(run: str | os.PathLike[str]) -> list[dict[str, Any]]: ...
def export(
    run: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
) -> list[str]: ...
