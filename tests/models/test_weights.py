"""Weights registry and resolution (the Hugging Face hub is always mocked: no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from napari_domaingen.models import weights as W
from napari_domaingen.models.weights import (
    ENV_WEIGHTS_DIR,
    REGISTRY,
    ChecksumMismatchError,
    WeightsUnavailableError,
    default_weights_dir,
    resolve_weights,
    sha256_file,
    verify_sha256,
)

REPO_URL = "https://huggingface.co/neeldey/anatomix"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Weights folder in tmp_path; hub offline as a second safety net."""
    folder = tmp_path / "weights"
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def mock_hub(monkeypatch: pytest.MonkeyPatch, behaviour: Any) -> list[dict[str, Any]]:
    """Replace huggingface_hub.hf_hub_download; returns the list of recorded calls."""
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def fake(*args: Any, **kwargs: Any) -> str:
        calls.append(kwargs)
        if isinstance(behaviour, BaseException):
            raise behaviour
        return str(behaviour(**kwargs))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    return calls


def test_registry_entries() -> None:
    assert list(REGISTRY) == ["anatomix", "anatomix-dev"]
    a, d = REGISTRY["anatomix"], REGISTRY["anatomix-dev"]
    assert (a.filename, d.filename) == ("anatomix.pth", "anatomix-dev.pth")
    assert a.repo_id == d.repo_id == "neeldey/anatomix"
    assert a.repo_url == REPO_URL
    assert a.n_params == 5_899_344 and d.n_params == 94_369_568
    assert a.config["norm"] == "batch" and d.config["norm"] == "instance" and d.config["norm_eps"] == 1e-2
    assert a.sha256 is None and d.sha256 is None  # unknown: not verified


def test_default_weights_dir(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    assert default_weights_dir() == isolated
    monkeypatch.delenv(ENV_WEIGHTS_DIR)
    assert default_weights_dir() == Path.home() / ".cache" / "napari-domaingen" / "weights"


def test_existing_path_returned_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = mock_hub(monkeypatch, AssertionError("hub called"))
    path = tmp_path / "mine.pth"
    path.write_bytes(b"x")
    assert resolve_weights(path) == path
    assert resolve_weights(str(path)) == path
    assert not calls


def test_unknown_name_or_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="known: anatomix, anatomix-dev"):
        resolve_weights("anatomix-xl")
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        resolve_weights(tmp_path / "nothere.pth")


def test_hand_placed_file_used_without_hub(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    calls = mock_hub(monkeypatch, AssertionError("hub called"))
    isolated.mkdir(parents=True)
    (isolated / "anatomix-dev.pth").write_bytes(b"weights")
    assert resolve_weights("anatomix-dev") == isolated / "anatomix-dev.pth"
    other = isolated.parent / "elsewhere"
    other.mkdir()
    (other / "anatomix.pth").write_bytes(b"weights")
    assert resolve_weights("anatomix", cache_dir=other) == other / "anatomix.pth"
    assert not calls


@pytest.mark.parametrize("kind", ["offline", "oserror", "other"])
def test_hub_failure_gives_actionable_error(kind: str, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    error: BaseException = {
        "offline": LocalEntryNotFoundError("offline mode is enabled"),
        "oserror": OSError("Network is unreachable"),
        "other": RuntimeError("connection reset"),
    }[kind]
    calls = mock_hub(monkeypatch, error)
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("anatomix")
    msg = str(info.value)
    assert "anatomix.pth" in msg
    assert REPO_URL in msg
    assert str(isolated / "anatomix.pth") in msg
    assert ENV_WEIGHTS_DIR in msg
    assert info.value.expected_path == isolated / "anatomix.pth"
    assert info.value.__cause__ is error
    assert calls == [{"repo_id": "neeldey/anatomix", "filename": "anatomix.pth", "cache_dir": str(isolated)}]


def test_download_disabled(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    calls = mock_hub(monkeypatch, AssertionError("hub called"))
    with pytest.raises(WeightsUnavailableError, match="anatomix-dev.pth"):
        resolve_weights("anatomix-dev", allow_download=False)
    assert not calls


def test_successful_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "snapshot" / "anatomix.pth"
    target.parent.mkdir()
    target.write_bytes(b"downloaded")
    calls = mock_hub(monkeypatch, lambda **kwargs: target)
    assert resolve_weights("anatomix") == target
    assert len(calls) == 1


def test_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    data = b"not really weights" * 1000
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=7) == digest
    verify_sha256(path, digest.upper())
    verify_sha256(path, None)
    with pytest.raises(ChecksumMismatchError, match="checksum mismatch") as info:
        verify_sha256(path, "0" * 64)
    assert info.value.actual == digest and str(path) in str(info.value)

    # through the registry: a hand-placed file, then a downloaded one
    spec = dataclasses.replace(REGISTRY["anatomix"], sha256=digest)
    monkeypatch.setitem(W.REGISTRY, "anatomix", spec)
    isolated.mkdir(parents=True)
    placed = isolated / "anatomix.pth"
    placed.write_bytes(data)
    assert resolve_weights("anatomix") == placed
    placed.write_bytes(data + b"corrupt")
    with pytest.raises(ChecksumMismatchError, match="anatomix.pth"):
        resolve_weights("anatomix")
    placed.unlink()
    mock_hub(monkeypatch, lambda **kwargs: path)
    assert resolve_weights("anatomix") == path
    monkeypatch.setitem(W.REGISTRY, "anatomix", dataclasses.replace(spec, sha256="f" * 64))
    with pytest.raises(ChecksumMismatchError):
        resolve_weights("anatomix")


def test_import_is_light() -> None:
    """Importing the registry neither imports huggingface_hub nor torch (so no network at import)."""
    code = (
        "import sys, napari_domaingen\n"
        "before = {m for m in ('huggingface_hub', 'torch') if m in sys.modules}\n"
        "import napari_domaingen.models.weights\n"
        "after = {m for m in ('huggingface_hub', 'torch') if m in sys.modules}\n"
        "print(sorted(after - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
