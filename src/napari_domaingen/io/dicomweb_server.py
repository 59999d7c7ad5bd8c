"""A DICOMweb server: its address, credentials, TLS trust and limits, and the one-line errors of talking to it.

* **Address**: ``https://host/dicom-web`` (the DICOMweb root, where ``/studies`` lives); ``dicomweb+https://…``
  and ``dicomweb+http://…`` are the same addresses, ``dicomweb://…`` means HTTPS. An address that carries a user
  or password (``https://user:pw@host``) is refused: credentials never travel in addresses, which end up in
  shells' histories, logs and ``results.csv``.
* **Credentials**, first found wins: ``DOMAINGEN_DICOMWEB_TOKEN`` (a bearer token), ``DOMAINGEN_DICOMWEB_USER`` +
  ``DOMAINGEN_DICOMWEB_PASSWORD`` (HTTP basic), then the settings file. They are kept out of every message,
  ``repr`` and output, and sent only to the server they belong to.
* **Settings file** ``dicomweb.json`` in the configuration folder (``$DOMAINGEN_CONFIG_DIR``, else the platform's,
  e.g. ``~/.config/napari-domaingen``) or ``$DOMAINGEN_DICOMWEB_SETTINGS``; readable by its owner only (``chmod
  600``), else refused. ``{"servers": {"https://pacs.example.org/dicom-web": {"user": "…", "password": "…"} or
  {"token": "…"}, and optionally "ca_file": "/path/ca.pem"}}``.
* **TLS** is verified against the system's certificates; ``ca_file`` (or ``--ca-file``) trusts a CA of its own.
* **Limits**: every request times out (:data:`CONNECT_TIMEOUT` s to connect, :data:`READ_TIMEOUT` s between bytes);
  a request that fails to connect, times out or gets a busy answer (429, 408, 503, 504) is tried :data:`RETRIES`
  more times, 0.5 s then 1 s later (dicomweb-client's retry); any other HTTP error is reported at once.

Nothing here imports napari, Qt or torch.

>>> server_from("dicomweb+http://127.0.0.1:8042/dicom-web/").url
'http://127.0.0.1:8042/dicom-web'
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import DomaingenError

__all__ = [
    "CONNECT_TIMEOUT",
    "ENV_PASSWORD",
    "ENV_SETTINGS",
    "ENV_TOKEN",
    "ENV_USER",
    "READ_TIMEOUT",
    "RETRIES",
    "PacsError",
    "Server",
    "normalise_address",
    "server_from",
    "settings_path",
    "talking_to",
]

ENV_USER = "DOMAINGEN_DICOMWEB_USER"
ENV_PASSWORD = "DOMAINGEN_DICOMWEB_PASSWORD"
ENV_TOKEN = "DOMAINGEN_DICOMWEB_TOKEN"
ENV_SETTINGS = "DOMAINGEN_DICOMWEB_SETTINGS"
ENV_CONFIG_DIR = "DOMAINGEN_CONFIG_DIR"
#: seconds to open a connection / to wait between two bytes of an answer
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
#: extra attempts after a failed connection, a timeout or a busy answer (429, 408, 503, 504): 0.5 s, then 1 s later
RETRIES = 2

_SCHEMES = {"dicomweb": "https", "dicomweb+https": "https", "dicomweb+http": "http", "https": "https", "http": "http"}
_HINT_401 = f"check the credentials ({ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN} or the settings file)"


class PacsError(DomaingenError):
    """Talking to a DICOMweb server failed; ``str(err)`` reads ``"<server>: <problem>"`` in one line, never with
    credentials."""

    def __init__(self, server: str, problem: str) -> None:
        self.server = server
        self.problem = problem
        super().__init__(f"{server}: {problem}")


@dataclass(frozen=True)
class Server:
    """A DICOMweb root ``url`` (``http(s)://host[:port]/path``, no trailing slash) with its credentials (hidden
    from ``repr``) and TLS trust (``ca_file``; ``None``: the system's CAs)."""

    url: str
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)

    @property
    def credentials(self) -> str:
        """What kind of credentials are used (``"bearer token"``, ``"user alice"``, ``"none"``), for messages."""
        if self.token:
            return "bearer token"
        return f"user {self.user}" if self.user else "none"

    def session(self):
        """A ``requests.Session`` carrying the credentials and TLS trust (the token is a header of the session, so
        dicomweb-client never logs it)."""
        session = _session()
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.user:
            session.auth = (self.user, self.password or "")
        session.verify = self.ca_file or True
        return session

    def client(self):
        """The ``dicomweb_client.DICOMwebClient`` of this server, with its timeouts and bounded retries; made once
        per :class:`Server`, so its requests share one session (and its connections)."""
        return self._client

    @functools.cached_property
    def _client(self):
        from dicomweb_client import DICOMwebClient

        with talking_to(self, "connecting"):
            client = DICOMwebClient(self.url, session=self.session(), timeout=self.timeout)
        client.set_http_retry_params(retry=True, max_attempts=RETRIES + 1, wait_exponential_multiplier=250)
        return client


def _session():
    """A ``requests.Session`` that sends QIDO wildcards as ``*``: dicomweb-client escapes them as ``%2A``, which
    Orthanc's DICOMweb plugin (1.7, Debian 12) takes literally, so ``PatientID=DOE*`` would match nothing."""
    import requests

    class _WildcardSession(requests.Session):
        def prepare_request(self, request):
            prepared = super().prepare_request(request)
            if prepared.url and "?" in prepared.url:
                path, query = prepared.url.split("?", 1)
                prepared.url = f"{path}?{query.replace('%2A', '*').replace('%2a', '*')}"
            return prepared

    return _WildcardSession()


def settings_path() -> Path:
    """The settings file: ``$DOMAINGEN_DICOMWEB_SETTINGS``, else ``dicomweb.json`` in the configuration folder."""
    if os.environ.get(ENV_SETTINGS):
        return Path(os.environ[ENV_SETTINGS])
    if os.environ.get(ENV_CONFIG_DIR):
        return Path(os.environ[ENV_CONFIG_DIR]) / "dicomweb.json"
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-domaingen", appauthor=False)) / "dicomweb.json"


def normalise_address(url: str) -> str:
    """``dicomweb+http://h/p/`` → ``http://h/p`` (no query, no trailing slash); refuses credentials in it."""
    text = url.strip()
    parts = urlsplit(text)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise PacsError(
            _safe(text),
            "not a DICOMweb address; give http(s)://host[:port]/path (e.g. http://127.0.0.1:8042/dicom-web)",
        )
    if parts.username or parts.password:
        raise PacsError(
            _safe(text),
            f"the address must not hold a user or password; set {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}, or "
            f"write them in {settings_path()}",
        )
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _safe(text: str) -> str:
    """An address as it may be shown: without user, password and query."""
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) or "<address>"


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PacsError(str(path), "the DICOMweb settings file is readable by other users; run `chmod 600` on it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PacsError(str(path), f"cannot be read as JSON ({type(exc).__name__})") from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise PacsError(str(path), 'expected {"servers": {"<address>": {"user": …, "password": …}}}')
    return {normalise_address(address): entry for address, entry in servers.items() if isinstance(entry, dict)}


def server_from(url: str, ca_file: str | os.PathLike | None = None) -> Server:
    """The :class:`Server` at ``url`` with its credentials from the environment or the settings file (module
    docstring); raises :class:`PacsError` for an address that is not one, or a settings file others can read."""
    address = normalise_address(url)
    entry = _read_settings(settings_path()).get(address, {})
    env = os.environ
    if env.get(ENV_TOKEN):
        credentials = {"token": env[ENV_TOKEN]}
    elif env.get(ENV_USER):
        credentials = {"user": env[ENV_USER], "password": env.get(ENV_PASSWORD, "")}
    else:
        credentials = {key: str(entry[key]) for key in ("user", "password", "token") if entry.get(key)}
    trust = ca_file or entry.get("ca_file")
    if trust is not None and not Path(trust).is_file():
        raise PacsError(address, f"the CA file {trust} does not exist")
    return Server(address, ca_file=str(trust) if trust else None, **credentials)


def _reason(exc: BaseException) -> str:
    """The root cause of a connection error in a few words (``Connection refused``, ``Name or service …``)."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc).split("] ")[-1].strip().rstrip(")'\"")
    return text[:120] or type(exc).__name__


@contextlib.contextmanager
def talking_to(server: Server, what: str) -> Iterator[None]:
    """Turn what ``requests`` raises while ``what`` (``"searching studies"``) into one :class:`PacsError` line
    naming the server and the HTTP status (401/403 say to check the credentials, never showing them)."""
    import requests
    import retrying

    try:
        yield
    except requests.exceptions.SSLError:
        raise PacsError(
            server.url,
            f"the server's TLS certificate is not trusted while {what}; give its CA with --ca-file (or "
            '"ca_file" in the settings file)',
        ) from None
    except requests.exceptions.ConnectTimeout:
        raise PacsError(server.url, f"no connection within {server.timeout[0]:g} s while {what}") from None
    except requests.exceptions.ReadTimeout:
        raise PacsError(server.url, f"no answer within {server.timeout[1]:g} s while {what}") from None
    except requests.exceptions.ConnectionError as exc:
        raise PacsError(server.url, f"cannot connect while {what} ({_reason(exc)}); is the server running?") from None
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        status = f"HTTP {response.status_code} {response.reason}" if response is not None else "an HTTP error"
        hint = f"; {_HINT_401}" if response is not None and response.status_code in (401, 403) else ""
        raise PacsError(server.url, f"{status} while {what}{hint}") from None
    except requests.exceptions.RequestException as exc:
        raise PacsError(server.url, f"{type(exc).__name__} while {what}") from None
    except retrying.RetryError as exc:  # still busy (429/408/503/504) after the bounded retries
        response = exc.last_attempt.value if not exc.last_attempt.has_exception else None
        status = f"HTTP {response.status_code} {response.reason}" if response is not None else "busy"
        raise PacsError(server.url, f"{status} after {RETRIES + 1} attempts while {what}") from None
