"""Start, watch and stop one local service process; its pid file says what `up` started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdc.errors import ServiceError

# services outlive the `up` call that started them; keep their Popen handles so they are reaped, not leaked
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessFiles:
    name: str
    folder: Path

    @property
    def pid_file(self) -> Path:
        return self.folder / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.name}.log"


def read_pid(files: ProcessFiles) -> int | None:
    """The pid `up` recorded, if that process still runs."""
    try:
        pid = int(files.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    child = _children.get(pid)
    if child is not None:  # our own child: poll() reaps it once it has exited
        return child.poll() is None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def require_free_port(name: str, host: str, port: int, grace: float = 10.0) -> None:
    """Refuse a taken port, after a short grace: a service killed a moment ago may still hold it."""
    deadline = time.monotonic() + grace
    while port_open(host, port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{name}: port {host}:{port} is already taken by another process; free it or set another port")
        time.sleep(0.5)


def start(files: ProcessFiles, argv: list[str], env: dict[str, str] | None = None) -> int:
    files.folder.mkdir(parents=True, exist_ok=True)
    with files.log_file.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv is built from our own settings
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    _children[proc.pid] = proc
    files.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_until(
    files: ProcessFiles,
    pid: int,
    healthy: Callable[[], bool],
    timeout: float,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise ServiceError(f"{what} exited while starting", str(files.log_file))
        try:
            if healthy():
                return
        except Exception:  # noqa: BLE001, S110 - any probe failure means "not yet"
            pass
        time.sleep(0.5)
    raise ServiceError(f"{what} did not become healthy within {timeout:.0f} s", str(files.log_file))


def stop(files: ProcessFiles, timeout: float = 30.0) -> bool:
    """Stop the process `up` started (SIGTERM, then SIGKILL); True if one was running."""
    pid = read_pid(files)
    if pid is None:
        files.pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
    files.pid_file.unlink(missing_ok=True)
    return True
