"""A real PostgreSQL on a free loopback port, from Debian's binaries, in a temporary folder; stopped by PID.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the ``postgres`` user (``setpriv``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from prelabel.labelstudio.local import free_port

USER = "prelabel"  # the database superuser initdb creates (trust auth, loopback only)


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` (or ``$PRELABEL_PG_BIN``) holding initdb and postgres."""
    candidates = [os.environ["PRELABEL_PG_BIN"]] if os.environ.get("PRELABEL_PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    return None


class LocalPostgres:
    """``initdb`` + ``postgres`` on 127.0.0.1:<free port>; :meth:`database` makes a fresh database's URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="prelabel-pg-"))  # /tmp itself: traversable by the server user
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        subprocess.run([*self._prefix, str(bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        log = open(self.log_path, "ab")  # noqa: SIM115  (the server writes to it until stop)
        self.proc = subprocess.Popen(
            [*self._prefix, str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=on",
             "-c", "synchronous_commit=on"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._count = 0
        self._wait_ready()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"feedback_{self._count}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self, grace: float = 30) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID), SIGKILL after ``grace``; remove the folder."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
