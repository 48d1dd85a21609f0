"""A throwaway PostgreSQL server for the tests, from Debian's ``postgresql`` package.

``PgServer.start()`` runs ``initdb`` and ``pg_ctl start`` in a fresh temp dir on a free
loopback port (as the ``postgres`` user when the tests run as root: PostgreSQL refuses to
run as root) and ``stop()`` shuts it down and deletes the dir. Missing binaries are an
error, never a skip: ``apt-get install -y postgresql`` (and ``psycopg[binary]`` in the
venv) is part of the test setup. ``HERD_PG_BIN`` may point at another ``bin`` directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) are required for the trace-store tests: "
    "install them with `apt-get install -y postgresql` (Debian/Ubuntu) or set HERD_PG_BIN "
    "to the directory holding initdb and pg_ctl"
)


class PgUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    env = os.environ.get("HERD_PG_BIN")
    candidates = [env] if env else []
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise PgUnavailable(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable(
                    "running as root, and there is no 'postgres' user to run PostgreSQL as "
                    "(the Debian package creates it)"
                ) from None
        self.dir = Path(tempfile.mkdtemp(prefix="herd-pg-"))
        self.port = _free_port()
        self.started = False

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                   "--clear-groups", "--", *cmd]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgUnavailable(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )

    def start(self) -> PgServer:
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D", str(self.data), "-U", "herd", "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.resume()
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data: a database that went down (``resume``)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.started = False

    def resume(self) -> None:
        """Start the server (again) on the same port and data."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data), "-o", options, "-l", str(self.dir / "server.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.started = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://herd@127.0.0.1:{self.port}/{database}"

    def create_database(self, encoding: str | None = None) -> str:
        """A fresh, empty database (in ``encoding``, e.g. ``LATIN1``, when given; the
        server's UTF8 otherwise); returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        options = (
            f" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            if encoding
            else ""
        )
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="herd", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{options}')
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")  # fmt: skip
        finally:
            self.started = False
            shutil.rmtree(self.dir, ignore_errors=True)
