"""One window per data dir: a second launch brings the open window forward and exits.

The first launch holds an exclusive lock on `DATA/desktop.lock` for its whole life (the OS drops
it if the process dies, so a crash leaves nothing stale) and listens on a local socket (a Unix
socket beside the lock; a named pipe on Windows). A second launch finds the lock taken, connects,
sends `raise`, waits for `ok`, and exits 0. Only raw bytes cross the socket (never pickles), and
the only thing a peer can ask for is to raise the window.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Client, Listener
from pathlib import Path

log = logging.getLogger("pushbutton")
RAISE = b"raise"
OK = b"ok"
CLOSING = b"closing"  # the window is gone and its runs are stopping: start anew once it exits
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def address_for(data_dir: Path) -> tuple[str, str]:
    """(address, family) of the listener for this data dir."""
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if sys.platform == "win32":
        return rf"\\.\pipe\pushbutton-{key}", "AF_PIPE"
    path = data_dir / "desktop.sock"
    if len(str(path).encode()) > UNIX_PATH_MAX:
        path = Path(tempfile.gettempdir()) / f"pushbutton-{os.getuid()}-{key}.sock"
    return str(path), "AF_UNIX"


class SingleInstance:
    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir)
        self.lock_path = self.dir / "desktop.lock"
        self.address, self.family = address_for(self.dir)
        self._lock_file = None
        self._listener: Listener | None = None

    # -- the lock ----------------------------------------------------------------------------

    def acquire(self) -> bool:
        """True if this process is now the only window on this data dir."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: history (server/store.py)
        handle = open(self.lock_path, "a+b")  # noqa: SIM115 - held for the life of the process
        try:
            _lock(handle)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def release(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(OSError):
                listener.close()  # also removes the Unix socket file
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- the first launch: listen --------------------------------------------------------------

    def listen(self, on_raise: Callable[[], bool]) -> None:
        """Serve `raise` requests on a daemon thread; call only while holding the lock.
        `on_raise()` returns False when there is no window to raise any more (closing)."""
        if self.family == "AF_UNIX":
            Path(self.address).unlink(missing_ok=True)  # left by a crashed owner: we hold the lock
        self._listener = Listener(self.address, self.family)
        if self.family == "AF_UNIX":
            os.chmod(self.address, 0o600)
        threading.Thread(target=self._serve, args=(self._listener, on_raise), name="pushbutton-instance",
                         daemon=True).start()

    def _serve(self, listener: Listener, on_raise: Callable[[], bool]) -> None:
        while True:
            try:
                conn = listener.accept()
            except OSError:
                return  # closed
            try:
                if conn.poll(5) and conn.recv_bytes(64) == RAISE:
                    log.info("a second launch asked for this window: bringing it forward")
                    conn.send_bytes(OK if on_raise() else CLOSING)
            except (OSError, EOFError):
                pass
            except Exception:  # a bug in on_raise must not stop the listener
                log.exception("raising the window failed")
            finally:
                conn.close()

    # -- the second launch: ask ---------------------------------------------------------------

    def ask_to_raise(self, timeout: float = 15) -> str:
        """Ask the window that holds the lock to come forward: "raised", "closing" (it is shutting
        down), or "" if it never answered.

        The owner may be starting (lock taken, socket not yet listening): retry until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = Client(self.address, self.family)
            except OSError:
                if time.monotonic() > deadline:
                    return ""
                time.sleep(0.1)
                continue
            try:
                conn.send_bytes(RAISE)
                answer = conn.recv_bytes(16) if conn.poll(max(0.1, deadline - time.monotonic())) else b""
            except (OSError, EOFError):
                return ""
            finally:
                conn.close()
            return {OK: "raised", CLOSING: "closing"}.get(answer, "")

    def wait_for_lock(self, timeout: float = 120) -> bool:
        """Acquire the lock once its owner has exited (it said it is closing)."""
        deadline = time.monotonic() + timeout
        while not self.acquire():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def _lock(handle) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
