"""Weights registry and resolution (the Hugging Face hub is always mocked: no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from napari_domaingen.models import weights as W
from napari_domaingen.models.weights import (
    ENV_HUB_TIMEOUT,
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


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Offline mode off and no proxies; the network itself is still never used (endpoints are local/mocked)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *(p + "_PROXY" for p in ("HTTP", "HTTPS", "ALL"))):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


@pytest.fixture
def hub_reachable(online: pytest.MonkeyPatch) -> None:
    online.setattr(W, "hub_unreachable_reason", lambda *a, **k: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_actionable(err: WeightsUnavailableError, folder: Path, *fragments: str) -> None:
    msg = str(err)
    for fragment in ("anatomix.pth", REPO_URL, str(folder / "anatomix.pth"), ENV_WEIGHTS_DIR, *fragments):
        assert fragment in msg


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


@pytest.mark.usefixtures("hub_reachable")
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


@pytest.mark.usefixtures("hub_reachable")
def test_successful_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "snapshot" / "anatomix.pth"
    target.parent.mkdir()
    target.write_bytes(b"downloaded")
    calls = mock_hub(monkeypatch, lambda **kwargs: target)
    assert resolve_weights("anatomix") == target
    assert len(calls) == 1


@pytest.mark.usefixtures("hub_reachable")
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


# --- offline / unreachable hub: fail fast (issue "Offline fails fast") -------------------------------------


def resolve_timed(**kwargs: Any) -> tuple[WeightsUnavailableError, float]:
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("anatomix", **kwargs)
    return info.value, time.perf_counter() - start


def test_unreachable_hub_fails_fast(online: pytest.MonkeyPatch, isolated: Path) -> None:
    """Closed local port as endpoint: huggingface_hub alone would retry for ~25 s; the probe says so at once."""
    from huggingface_hub import constants

    online.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    calls = mock_hub(online, AssertionError("hf_hub_download called although the hub is unreachable"))
    err, elapsed = resolve_timed()
    assert elapsed < 3.0
    assert_actionable(err, isolated, "could not be reached", constants.ENDPOINT)
    assert not calls


def test_hanging_dns_is_cut_off(online: pytest.MonkeyPatch, isolated: Path) -> None:
    """A name lookup that never returns (getaddrinfo ignores socket timeouts) is abandoned after the timeout."""
    from huggingface_hub import constants

    release = threading.Event()

    def hanging_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "released by the test")

    online.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    online.setattr(constants, "ENDPOINT", "https://hub.example.invalid")
    online.setenv(ENV_HUB_TIMEOUT, "0.5")
    calls = mock_hub(online, AssertionError("hf_hub_download called although the hub is unreachable"))
    try:
        err, elapsed = resolve_timed()
    finally:
        release.set()
    assert 0.4 < elapsed < 3.0
    assert_actionable(err, isolated, "could not be reached", "no answer within 0.5 s")
    assert not calls


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_env_skips_network(var: str, online: pytest.MonkeyPatch, isolated: Path) -> None:
    online.setenv(var, "1")
    online.setattr(W, "hub_unreachable_reason", lambda *a, **k: pytest.fail("probe run in offline mode"))
    calls = mock_hub(online, AssertionError("hf_hub_download called in offline mode"))
    err, elapsed = resolve_timed()
    assert elapsed < 3.0
    assert_actionable(err, isolated, "HF_HUB_OFFLINE")
    assert not calls


@pytest.mark.parametrize("env", ["endpoint", "offline"])
def test_fresh_process_fails_fast(env: str, tmp_path: Path) -> None:
    """End to end in a new interpreter (huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import)."""
    environ = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and not k.endswith("_OFFLINE")}
    environ |= {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}
    if env == "offline":
        environ["HF_HUB_OFFLINE"] = "1"
    code = (
        "import time; t = time.perf_counter()\n"
        "from napari_domaingen.models.weights import resolve_weights, WeightsUnavailableError\n"
        "try:\n"
        f"    resolve_weights('anatomix', cache_dir={str(tmp_path / 'w')!r})\n"
        "except WeightsUnavailableError as err:\n"
        "    print(f'{time.perf_counter() - t:.3f}'); print(err)\n"
    )
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=environ, timeout=60)
    elapsed, message = out.stdout.split("\n", 1)
    assert float(elapsed) < 3.0, out.stdout
    assert "anatomix.pth" in message and REPO_URL in message and str(tmp_path / "w" / "anatomix.pth") in message
    assert ("HF_HUB_OFFLINE is set" if env == "offline" else "could not be reached") in message


@pytest.fixture
def local_hub(online: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A local HTTP server as hub endpoint; answers HEAD with the status in the returned list."""
    from huggingface_hub import constants

    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    online.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield status
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("code", [200, 404])
def test_reachable_hub_downloads(code: int, local_hub: list[int], online: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    local_hub[0] = code
    assert W.hub_unreachable_reason() is None
    target = tmp_path / "anatomix.pth"
    target.write_bytes(b"downloaded")
    calls = mock_hub(online, lambda **kwargs: target)
    assert resolve_weights("anatomix") == target
    assert len(calls) == 1
    assert W.hub_unreachable_reason(constants.ENDPOINT, timeout=1.0) is None


def test_hub_answering_5xx_counts_as_unreachable(
    local_hub: list[int], online: pytest.MonkeyPatch, isolated: Path
) -> None:
    local_hub[0] = 502  # e.g. a proxy that cannot reach the hub: huggingface_hub would retry it for ~25 s
    calls = mock_hub(online, AssertionError("hf_hub_download called"))
    err, elapsed = resolve_timed()
    assert elapsed < 3.0
    assert_actionable(err, isolated, "could not be reached", "HTTP 502")
    assert not calls


@pytest.mark.parametrize("allow_download", [True, False])
def test_hub_cache_used_without_network(allow_download: bool, online: pytest.MonkeyPatch, isolated: Path) -> None:
    """A copy downloaded earlier into the folder's hub cache is found without probe or download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = isolated / "models--neeldey--anatomix"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    cached = repo / "snapshots" / commit / "anatomix.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cached weights")
    online.setattr(W, "hub_unreachable_reason", lambda *a, **k: pytest.fail("network probed"))
    calls = mock_hub(online, AssertionError("hf_hub_download called"))
    assert resolve_weights("anatomix", allow_download=allow_download) == cached
    assert not calls
    spec = dataclasses.replace(REGISTRY["anatomix"], sha256="0" * 64)
    online.setitem(W.REGISTRY, "anatomix", spec)
    with pytest.raises(ChecksumMismatchError):
        resolve_weights("anatomix", allow_download=allow_download)
