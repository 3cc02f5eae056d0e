"""A throw-away PostgreSQL server on 127.0.0.1 for the scale-out tests and benchmark.

Debian's `postgresql` package provides initdb/pg_ctl; PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` user (or `nobody`) in a folder it owns. `pg_ctl -w`
returns once the server accepts connections: no polling on timing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runner() -> tuple[list[str], str]:
    """The command prefix that runs a program as a non-root user, and that user's name."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"], user
    raise RuntimeError("running as root and no postgres/nobody user to run PostgreSQL as")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields a libpq connection string (for `ducklake:postgres:<it>`)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL (initdb, pg_ctl) is not installed")
    prefix, user = _runner()
    home = Path(tempfile.mkdtemp(prefix="hedgewatch-pg-"))
    data = home / "data"
    if prefix:
        shutil.chown(home, user=user)
    port = _free_port()
    run = lambda *args: subprocess.run(  # noqa: E731
        [*prefix, *args], check=True, capture_output=True, text=True, timeout=300
    )
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            "300",
            "-l",
            str(home / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=50",
            "start",
        )
        try:
            yield f"dbname=postgres host=127.0.0.1 port={port} user={user}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
