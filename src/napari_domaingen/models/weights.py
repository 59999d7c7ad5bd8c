"""Registry of known anatomix weights and their resolution to a local file.

Nothing here touches the network at import time; ``huggingface_hub`` is imported only when a name has no
hand-placed file. Resolution order for a registry name (``"anatomix"``, ``"anatomix-dev"``):

1. a file placed by hand in the weights folder, named exactly like the hub file
   (``$DOMAINGEN_WEIGHTS_DIR`` or ``~/.cache/napari-domaingen/weights``; e.g. ``.../weights/anatomix.pth``);
2. a copy already in that folder's ``huggingface_hub`` cache (looked up without any network access);
3. ``huggingface_hub.hf_hub_download`` into that same folder, unless ``HF_HUB_OFFLINE`` is set, and only
   after a single probe request to the hub answered within ``$DOMAINGEN_HUB_TIMEOUT`` seconds (default 2,
   DNS resolution included).

If none works, :class:`WeightsUnavailableError` says which file to fetch, from where, and where to put it —
within seconds when the hub cannot be reached (``huggingface_hub`` itself retries for ~25 s).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DomaingenError

__all__ = [
    "ENV_HUB_TIMEOUT",
    "ENV_WEIGHTS_DIR",
    "HF_REPO_ID",
    "REGISTRY",
    "ChecksumMismatchError",
    "WeightsSpec",
    "WeightsUnavailableError",
    "available_weights",
    "default_weights_dir",
    "get_spec",
    "hub_unreachable_reason",
    "resolve_weights",
    "sha256_file",
    "verify_sha256",
]

#: Environment variable overriding the folder where weights are looked up / downloaded to.
ENV_WEIGHTS_DIR = "DOMAINGEN_WEIGHTS_DIR"
#: Hugging Face hub repository of the anatomix authors.
HF_REPO_ID = "neeldey/anatomix"
#: Environment variable: seconds the hub reachability probe (DNS + TCP connect) may take before giving up.
ENV_HUB_TIMEOUT = "DOMAINGEN_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT = 2.0


@dataclass(frozen=True, kw_only=True)
class WeightsSpec:
    """One known checkpoint.

    ``config`` holds the :class:`~napari_domaingen.models.anatomix.AnatomixUNet` constructor kwargs;
    ``n_params`` is the number of trainable parameters; ``sha256`` is the hex digest of the file, or
    ``None`` when not known (then no checksum is verified).
    """

    name: str
    repo_id: str = HF_REPO_ID
    filename: str
    sha256: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    n_params: int | None = None

    @property
    def repo_url(self) -> str:
        """Web page of the hub repository, e.g. ``https://huggingface.co/neeldey/anatomix``."""
        return f"https://huggingface.co/{self.repo_id}"

    @property
    def file_url(self) -> str:
        """Direct download address of the file on the hub (``main`` revision)."""
        return f"{self.repo_url}/resolve/main/{self.filename}"


REGISTRY: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="anatomix",
            filename="anatomix.pth",
            sha256=None,  # not published; the check is implemented and applied once a digest is recorded
            config={
                "in_channels": 1,
                "out_channels": 16,
                "ngf": 16,
                "num_downs": 4,
                "norm": "batch",
                "pooling": "max",
                "upsample": "nearest",
                "norm_eps": 1e-5,
            },
            description=(
                "anatomix 3D UNet (5.90M parameters): batch norm, max pooling, nearest upsampling, "
                "16 output feature channels. Input: 1 channel min-max scaled to [0, 1]."
            ),
            n_params=5_899_344,
        ),
        WeightsSpec(
            name="anatomix-dev",
            filename="anatomix-dev.pth",
            sha256=None,
            config={
                "in_channels": 1,
                "out_channels": 32,
                "ngf": 32,
                "num_downs": 5,
                "norm": "instance",
                "pooling": "avg",
                "upsample": "trilinear",
                "norm_eps": 1e-2,
            },
            description=(
                "anatomix-dev 3D UNet (94.4M parameters): instance norm (eps 1e-2), average pooling, "
                "trilinear upsampling, 32 output feature channels (normalise them voxel-wise before use)."
            ),
            n_params=94_369_568,
        ),
    )
}


class WeightsUnavailableError(DomaingenError, RuntimeError):
    """The weights could not be found locally nor downloaded.

    Attributes: ``name`` (registry name), ``filename`` (hub file), ``repo_url``, ``expected_path`` (where a
    hand-downloaded file is picked up).
    """

    def __init__(self, spec: WeightsSpec, expected_path: Path, reason: str) -> None:
        self.name = spec.name
        self.filename = spec.filename
        self.repo_url = spec.repo_url
        self.expected_path = expected_path
        self.reason = reason
        super().__init__(
            f"The '{spec.name}' weights file '{spec.filename}' is not available ({reason}). "
            f"Download '{spec.filename}' by hand from {spec.repo_url} ({spec.file_url}) and put it at "
            f"{expected_path} — it is then used without any network access. To use another folder, set the "
            f"environment variable {ENV_WEIGHTS_DIR}."
        )


class ChecksumMismatchError(DomaingenError, ValueError):
    """A weights file's SHA-256 differs from the registry's."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{path}: SHA-256 checksum mismatch (expected {expected}, got {actual}). The file is corrupt, "
            f"incomplete or a different version; delete it and download it again."
        )


def available_weights() -> list[str]:
    """Names of the registered weights, e.g. ``["anatomix", "anatomix-dev"]``."""
    return list(REGISTRY)


def get_spec(name: str) -> WeightsSpec:
    """The registry entry for ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights name {name!r}; known: {', '.join(REGISTRY)}") from None


def default_weights_dir() -> Path:
    """``$DOMAINGEN_WEIGHTS_DIR`` if set, else ``~/.cache/napari-domaingen/weights`` (not created here)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "napari-domaingen" / "weights"


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in ``chunk_size``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str | None) -> None:
    """Raise :class:`ChecksumMismatchError` if ``expected`` is given and differs from the file's digest."""
    if expected is None:
        return
    actual = sha256_file(path)
    if actual.lower() != expected.strip().lower():
        raise ChecksumMismatchError(Path(path), expected, actual)


def resolve_weights(
    name_or_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
) -> Path:
    """Local path of a weights file.

    ``name_or_path``: an existing file (returned as is, no checksum) or a registry name. For a name, the
    weights folder (``cache_dir``, else :func:`default_weights_dir`) is searched for the hub file name, then
    its ``huggingface_hub`` cache (no network); then, if ``allow_download``, ``HF_HUB_OFFLINE`` is not set and
    :func:`hub_unreachable_reason` finds the hub reachable, the file is fetched with ``huggingface_hub`` into
    that folder. Raises
    :class:`WeightsUnavailableError` when it cannot be obtained, :class:`ChecksumMismatchError` when the
    registry has a checksum and the file does not match it, ``FileNotFoundError`` for a path that does not
    exist and is no registry name.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return Path(name_or_path)
    name = os.fspath(name_or_path)
    if name not in REGISTRY:
        raise FileNotFoundError(
            f"{name}: no such weights file, and not a known weights name (known: {', '.join(REGISTRY)})"
        )
    spec = REGISTRY[name]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_weights_dir()
    by_hand = folder / spec.filename
    if by_hand.is_file():
        verify_sha256(by_hand, spec.sha256)
        return by_hand
    try:
        import huggingface_hub
    except ImportError as err:  # pragma: no cover - huggingface_hub is a dependency
        raise WeightsUnavailableError(spec, by_hand, f"huggingface_hub is not installed: {err}") from err
    cached = huggingface_hub.try_to_load_from_cache(spec.repo_id, spec.filename, cache_dir=str(folder))
    if isinstance(cached, str) and Path(cached).is_file():  # earlier download: no network needed
        verify_sha256(cached, spec.sha256)
        return Path(cached)
    if not allow_download:
        raise WeightsUnavailableError(spec, by_hand, "not found locally and downloading is disabled")
    if _hub_offline():
        raise WeightsUnavailableError(spec, by_hand, "not found locally and HF_HUB_OFFLINE is set")
    unreachable = hub_unreachable_reason()
    if unreachable is not None:
        raise WeightsUnavailableError(spec, by_hand, f"not found locally and {unreachable}")
    try:
        downloaded = huggingface_hub.hf_hub_download(
            repo_id=spec.repo_id, filename=spec.filename, cache_dir=str(folder)
        )
    except Exception as err:  # offline, no network, HTTP errors, gated/missing repo, disk errors ...
        reason = f"download from the Hugging Face hub failed: {type(err).__name__}: {err}"
        raise WeightsUnavailableError(spec, by_hand, reason) from err
    path = Path(downloaded)
    verify_sha256(path, spec.sha256)
    return path


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set now, or when ``huggingface_hub`` was imported."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def _hub_timeout() -> float:
    try:
        value = float(os.environ.get(ENV_HUB_TIMEOUT, DEFAULT_HUB_TIMEOUT))
    except ValueError:
        return DEFAULT_HUB_TIMEOUT
    return value if value > 0 else DEFAULT_HUB_TIMEOUT


def hub_unreachable_reason(endpoint: str | None = None, timeout: float | None = None) -> str | None:
    """``None`` if the hub answers a ``HEAD`` request within ``timeout`` s, else a short reason why not.

    ``endpoint`` defaults to the one ``huggingface_hub`` uses (``HF_ENDPOINT``). The request goes through
    ``huggingface_hub``'s own HTTP session (same proxies, certificates, client factory) but without its
    retries, in a daemon thread so that a hanging DNS lookup is cut off after ``timeout`` too. Any HTTP answer
    below 500 counts as reachable; a 5xx (e.g. a proxy's 502) does not, since the library would retry it.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT if endpoint is None else endpoint
    timeout = _hub_timeout() if timeout is None else timeout
    outcome: list[int | Exception] = []

    def probe() -> None:
        try:
            outcome.append(get_session().head(endpoint, timeout=timeout, follow_redirects=False).status_code)
        except Exception as err:
            outcome.append(err)

    thread = threading.Thread(target=probe, name="domaingen-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    what = f"the Hugging Face hub ({endpoint}) could not be reached"
    if not outcome:
        return f"{what} (no answer within {timeout:g} s; see {ENV_HUB_TIMEOUT})"
    result = outcome[0]
    if isinstance(result, Exception):
        return f"{what}: {type(result).__name__}: {result}"
    return f"{what}: it answered HTTP {result}" if result >= 500 else None
