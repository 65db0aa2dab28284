"""Start the tests' gunicorn servers from a process that has already imported the app.

A browser test starts its own gunicorn (a fresh database per test); a new Python process
spent most of its start importing Flask, SQLAlchemy, marshmallow and the app's modules,
about 2 s of CPU per test. One launcher per test process imports those modules once
(single-threaded, no app, no connection) and forks for each server; the child sets the
server's environment and runs gunicorn's own command line, exactly as
`python -m gunicorn ...` would, so the app is built (and `config` read) from that
environment in the child. The child gets the caller's stdout and stderr (passed over the
socket), so its output lands where a subprocess's would.

`python -m tests.support.launcher FD`: FD is the launcher's end of a SOCK_SEQPACKET pair.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _preload() -> None:
    """Import what a gunicorn of the app imports, without building the app or reading
    `config` for good (it reads the environment when imported; the child reloads it)."""
    import gunicorn.app.wsgiapp  # noqa: F401
    import gunicorn.glogging  # noqa: F401
    import gunicorn.workers.gthread  # noqa: F401
    import gunicorn.workers.sync  # noqa: F401

    import consent  # noqa: F401
    import consent.gunicorn_logging  # noqa: F401
    import consent.web

    for info in pkgutil.iter_modules(consent.web.__path__):  # as register_blueprints does
        importlib.import_module(f"consent.web.{info.name}")
    for name in ("consent.models", "consent.errors", "consent.cli", "consent.csrf",
                 "consent.ledger.log"):
        importlib.import_module(name)


def _reap(*_):
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve(request: dict, fds: list[int]) -> int:
    """In the forked child: become the server REQUEST describes; returns its exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # its own process group, which AppServer kills as a whole
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    importlib.reload(sys.modules["config"])  # its settings read the environment
    sys.argv = request["argv"]
    from gunicorn.app.wsgiapp import run

    try:
        run()
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:  # noqa: BLE001  (what the interpreter would print, then exit 1)
        traceback.print_exc()
        return 1
    return 0


def main(fd: int) -> int:
    """Preload, then fork a server for every request on FD until the caller closes it."""
    sock = socket.socket(fileno=fd)
    _preload()
    if threading.active_count() != 1:  # fork() copies only the calling thread
        raise RuntimeError(f"the launcher must stay single-threaded: {threading.enumerate()}")
    signal.signal(signal.SIGCHLD, _reap)
    sock.send(b"ready")
    while True:
        message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            return 0
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            return _serve(request, fds)
        for each in fds:
            os.close(each)
        sock.send(str(pid).encode())


class Launcher:
    """The caller's side: one launcher process, started on first use."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.launcher",
                                      str(theirs.fileno())], cwd=ROOT,
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(120)
        if self.sock.recv(16) != b"ready":
            raise RuntimeError("the gunicorn launcher did not start")
        self.lock = threading.Lock()

    def spawn(self, argv: list[str], env: dict, cwd: Path) -> int:
        """Fork a server running gunicorn's command line ARGV in ENV; returns its pid."""
        message = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode()
        with self.lock:
            socket.send_fds(self.sock, [message], [0, 1, 2])
            return int(self.sock.recv(32))

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Forked:
    """A server the launcher forked, with the part of Popen's interface AppServer uses (it
    is the launcher's child, which reaps it: its exit is watched through a pidfd)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped)
            self._pidfd = None
            self.returncode = -1

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            watch = select.poll()  # not select(): a test may hold over 1024 descriptors
            watch.register(self._pidfd, select.POLLIN)
            if not watch.poll(None if timeout is None else timeout * 1000):
                raise subprocess.TimeoutExpired(f"gunicorn pid {self.pid}", timeout)
            os.close(self._pidfd)
            self.returncode = -1  # the launcher reaped it; its status is not ours to read
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


_LAUNCHER: Launcher | None = None


def launcher() -> Launcher:
    """This process's launcher (started on first use, stopped when the process exits)."""
    global _LAUNCHER
    if _LAUNCHER is None or _LAUNCHER.proc.poll() is not None:
        import atexit

        _LAUNCHER = Launcher()
        atexit.register(_LAUNCHER.close)
    return _LAUNCHER


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
