"""Run a real Label Studio locally (own venv, own process group) for end-to-end tests and the demo.

Label Studio pins its own Django/numpy stack, so it lives in a separate venv and runs as a
subprocess. The start-up environment is the one Label Studio's own docs and settings module read
(``label_studio/core/settings/base.py``): legacy tokens, local files, no SSRF block for loopback backends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import requests

DEFAULT_USERNAME = "admin@example.com"
DEFAULT_PASSWORD = "admin12345"
DEFAULT_TOKEN = "prelabel-local-token-0123456789abcdef"
# LS's get_env(X) falls back to plain X; PYTHONPATH/PYTHONHOME would leak the caller's packages into LS's venv.
_LEAKY_ENV = ("USERNAME", "PASSWORD", "PORT", "PYTHONPATH", "PYTHONHOME")
LABEL_STUDIO_VERSION = "1.23.2"
LABEL_STUDIO_LOCK = Path(__file__).resolve().parents[1] / "assets" / "label-studio.lock"
from prelabel.labelstudio.client import LabelStudioClient, LabelStudioError


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in _LEAKY_ENV}


def _port_in_use(port: int) -> bool:
    # The same check LS makes before silently moving to the next port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("localhost", port)) == 0


def ensure_label_studio(venv_dir: Path) -> Path:
    """The ``label-studio`` executable in ``venv_dir``, creating the venv and installing it if missing.

    Every package is pinned by ``assets/label-studio.lock``: Label Studio's own requirements are open-ended,
    and a new major release of one of them (sentry-sdk 3.0) breaks its start.
    """
    venv_dir = Path(venv_dir)
    executable = venv_dir / "bin" / "label-studio"
    if executable.exists():
        return executable
    version = LABEL_STUDIO_VERSION
    steps = [
        [sys.executable, "-m", "venv", str(venv_dir)],
        [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "-c", str(LABEL_STUDIO_LOCK),
         f"label-studio=={version}"],
    ]
    for cmd in steps:
        print(f"[prelabel.labelstudio.local] $ {' '.join(cmd)}", file=sys.stderr, flush=True)
        returncode = subprocess.run(cmd, env=_clean_env(), stdin=subprocess.DEVNULL).returncode  # output streams
        if returncode != 0:
            raise LabelStudioError(f"installing Label Studio {version} into {venv_dir} failed "
                                   f"(exit {returncode}): {' '.join(cmd)}")
    if not executable.exists():
        raise LabelStudioError(f"pip installed label-studio=={version} but {executable} does not exist")
    return executable


class LocalLabelStudio:
    """A Label Studio server on ``host:port`` with one admin user whose legacy API token is ``token``.

    The token only works if ``data_dir`` is new or was first started with the same token (the org's
    legacy-token setting and the user's token are fixed when the DB is created).
    """

    def __init__(
        self,
        executable: Path,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        token: str = DEFAULT_TOKEN,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if len(token) < 6:
            raise ValueError("Label Studio ignores user tokens shorter than 6 characters")
        self.executable = Path(executable)
        self.data_dir = Path(data_dir).absolute()
        self.port = free_port() if port is None else port
        self.host = host
        self.username = username
        self.password = password
        self._token = token
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self._token

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._token}"}

    @property
    def log_path(self) -> Path:
        return self.data_dir / "label-studio.log"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _env(self) -> dict[str, str]:
        env = _clean_env()
        env.update(
            LABEL_STUDIO_USERNAME=self.username,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_USER_TOKEN=self._token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            LABEL_STUDIO_HOST=self.url,
            # --data-dir alone applies too late: LS first creates dirs under ~/.local/share/label-studio
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(self.data_dir / "files"),
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            LATEST_VERSION_CHECK="false",
        )
        env.update(self._extra_env)
        return env

    def start(self, timeout: float = 180) -> LocalLabelStudio:
        """Launch the server and wait until ``/health`` is UP and the token is accepted."""
        if self._proc is not None:
            raise LabelStudioError(f"Label Studio is already running (pid {self._proc.pid})")
        if _port_in_use(self.port):
            raise LabelStudioError(f"port {self.port} is busy; Label Studio would silently move to another port")
        (self.data_dir / "files").mkdir(parents=True, exist_ok=True)
        cmd = [str(self.executable), "start", "--no-browser", "--internal-host", self.host,
               "--port", str(self.port), "--data-dir", str(self.data_dir), "--enable-legacy-api-token"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._error(f"Label Studio exited with code {self._proc.returncode}")
            try:
                health = requests.get(f"{self.url}/health", timeout=5)
                if health.ok and health.json().get("status") == "UP":
                    projects = requests.get(f"{self.url}/api/projects", headers=self.auth_headers, timeout=10)
                    if projects.ok:
                        return
                    if projects.status_code in (401, 403):
                        raise self._error(f"Label Studio rejects the API token ({projects.status_code}); was "
                                          f"{self.data_dir} created with another token or without legacy tokens?")
            except requests.RequestException:  # not up yet (a body that is not JSON is one too)
                pass
            time.sleep(0.5)
        raise self._error(f"Label Studio was not ready at {self.url} within {timeout:.0f} s")

    def _error(self, message: str, lines: int = 40) -> LabelStudioError:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                tail = "".join(deque(log, maxlen=lines))
        except OSError as exc:
            tail = f"(cannot read log: {exc})\n"
        return LabelStudioError(f"{message}\n--- last {lines} lines of {self.log_path} ---\n{tail}")

    def stop(self, grace: float = 15) -> None:
        """Terminate the server's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, grace)

    def client(self) -> LabelStudioClient:
        """prelabel's client of this server (``.sdk`` is its label-studio-sdk client)."""
        return LabelStudioClient(self.url, self._token)

    def __enter__(self) -> LocalLabelStudio:
        return self if self._proc is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """Stop a process started with ``start_new_session=True`` and all its children: SIGTERM, then SIGKILL."""
    if not _signal_group(proc.pid, signal.SIGTERM):
        proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or it stays in the group as a zombie
        if not _signal_group(proc.pid, 0):
            return
        time.sleep(0.1)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
