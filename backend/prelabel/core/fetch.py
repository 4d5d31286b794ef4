"""Server-side request forgery guards for image fetching: host allowlist, address checks, confined local files.

Every request (and every redirect hop, which ``requests`` sends through the same adapter) is checked twice:
its host must be allowed and all the addresses it resolves to must be public, and then the address the
socket actually connected to is checked again, so a DNS answer that changes between the check and the
connection (rebinding) cannot reach a forbidden address. Label Studio's own origin (scheme, host and port of
``LABEL_STUDIO_URL``) is trusted even on a private or loopback address; other services on its host are not.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from prelabel.core.errors import PrelabelError
from prelabel.settings import Settings

LOCAL_FILES_PATH = "/data/local-files/"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, the port filled in from the scheme."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    return scheme, (parsed.hostname or "").lower(), parsed.port or _DEFAULT_PORTS.get(scheme, 0)


def same_origin(url: str, base: str) -> bool:
    """Whether two URLs share scheme, host and port."""
    return origin(url) == origin(base)


class FetchRefused(PrelabelError):
    """A URL or path the backend will not read; the message names the setting that would allow it."""


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class FetchPolicy:
    """Which hosts and addresses image URLs may reach, and which folders local images may come from."""

    trusted_origins: frozenset[tuple[str, str, int]] = frozenset()  # Label Studio's: allowed on any address
    allowed_hosts: tuple[str, ...] = ()  # shell-style patterns ("*.example.com"); "*" allows every host
    allow_private: bool = False
    local_roots: tuple[Path, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        trusted = {origin(settings.label_studio_url)} if settings.label_studio_url else set()
        return cls(frozenset(o for o in trusted if o[1]), tuple(h.lower() for h in _split(settings.allowed_hosts)),
                   settings.allow_private_networks, tuple(Path(p).resolve() for p in _split(settings.local_roots)))

    def check_url(self, url: str) -> None:
        """Refuse a URL whose scheme, host, or any resolved address is not allowed."""
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        if parsed.scheme not in ("http", "https") or not host:
            raise FetchRefused(f"refusing {url}: only http(s) URLs with a host are fetched")
        trusted = origin(url) in self.trusted_origins
        if not trusted and not any(fnmatch(host, p) for p in self.allowed_hosts):
            raise FetchRefused(f"refusing {url}: {host!r} is neither LABEL_STUDIO_URL's origin nor in "
                               f"PRELABEL_ALLOWED_HOSTS")
        if trusted or self.allow_private:
            return
        try:
            infos = socket.getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchRefused(f"cannot resolve the host of {url}: {exc}") from exc
        for info in infos:
            self.check_address((parsed.scheme, host, parsed.port or _DEFAULT_PORTS[parsed.scheme]), str(info[4][0]))

    def check_address(self, to: tuple[str, str, int], address: str) -> None:
        """Refuse a private, loopback, link-local or otherwise non-public address for an untrusted origin."""
        scheme, host, port = to
        if (scheme, host.lower(), port) in self.trusted_origins or self.allow_private:
            return
        ip = ipaddress.ip_address(address.split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (mapped or ip).is_global:
            raise FetchRefused(f"refusing {host}: it resolves to the non-public address {address} (set "
                               f"PRELABEL_ALLOW_PRIVATE_NETWORKS=true to allow private networks)")

    def local_path(self, url: str) -> Path | None:
        """The confined local file for a ``file://`` URL or Label Studio ``/data/local-files/?d=`` path.

        None for other URLs, and for local-files paths when no roots are configured (they are then fetched
        from Label Studio over HTTP).
        """
        parsed = urlparse(url)
        if parsed.scheme == "file":
            candidates = [Path(unquote(parsed.path))]
        elif not parsed.scheme and parsed.path == LOCAL_FILES_PATH and self.local_roots:
            relative = (parse_qs(parsed.query).get("d") or [""])[0]
            candidates = [root / relative for root in self.local_roots]
        else:
            return None
        if not self.local_roots:
            raise FetchRefused(f"refusing {url}: local files are read only under PRELABEL_LOCAL_ROOTS, which "
                               f"is not set")
        for candidate in candidates:
            path = candidate.resolve()
            if any(path.is_relative_to(root) for root in self.local_roots) and path.is_file():
                return path
        raise FetchRefused(f"refusing {url}: not an existing file under PRELABEL_LOCAL_ROOTS")


def _guarded_connection(base: type[HTTPConnection], policy: FetchPolicy, scheme: str) -> type[HTTPConnection]:
    class GuardedConnection(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            try:
                policy.check_address((scheme, self.host, self.port or _DEFAULT_PORTS[scheme]), sock.getpeername()[0])
            except FetchRefused:
                sock.close()
                raise
            return sock

    return GuardedConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter that checks every URL it sends and every address it connects to against a policy."""

    def __init__(self, policy: FetchPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http = type("GuardedHTTPPool", (HTTPConnectionPool,),
                    {"ConnectionCls": _guarded_connection(HTTPConnection, self.policy, "http")})
        https = type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                     {"ConnectionCls": _guarded_connection(HTTPSConnection, self.policy, "https")})
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.policy.check_url(str(request.url))
        return super().send(request, *args, **kwargs)


def guarded_session(policy: FetchPolicy, max_redirects: int) -> requests.Session:
    """A requests session bound to ``policy``; proxies from the environment are ignored (they would hide
    the real destination from the address check)."""
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = max_redirects
    adapter = GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
