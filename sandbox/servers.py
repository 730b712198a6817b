"""The sandbox's two emulators as child processes on free loopback ports, always stopped.

Each server is started in its own session (a Ctrl-C in the terminal reaches the sandbox, which then
stops them in order) and, on Linux, is told to exit if the sandbox itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


@dataclass
class Server:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None  # None: a server someone else started and stops

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def answers_http(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - loopback URL
            return True
    except urllib.error.HTTPError:
        return True  # it speaks HTTP: it is up
    except OSError:
        return False


def start(
    name: str,
    args: Sequence[str],
    *,
    port: int,
    log: Path,
    ready_path: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start ``python <args>`` (in ``env``, else this process's environment) and wait until it
    answers HTTP on ``port``; stop it if it never does."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    server = Server(name, port, log, proc)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(
                    f"{name} exited with status {proc.returncode} before answering:\n{server.log_tail()}"
                )
            if answers_http(server.url + ready_path, timeout=1.0):
                return server
            time.sleep(0.1)
        raise ServerError(
            f"{name} did not answer on {server.url} within {timeout:g} s (log {log}):\n{server.log_tail()}"
        )
    except BaseException:
        server.stop()
        raise


def moto_args(port: int, spool: Path | None = None) -> list[str]:
    """sandbox.moto_server; with ``spool``, custom-resource events go there (a deployment needs
    it), without, it is moto with the fixes (what the tests share)."""
    args = ["-m", "sandbox.moto_server", "-H", LOOPBACK, "-p", str(port)]
    return [*args, "--custom-resource-spool", str(spool)] if spool else args


def fakesnow_args(port: int) -> list[str]:
    return ["-m", "sandbox.fakesnow_server", "--host", LOOPBACK, "-p", str(port)]
