"""When `ssh` needs a person (a key passphrase, a password): ssh runs our helper as its
`SSH_ASKPASS`, the helper asks this run's socket, the server asks the window's `asker`.

Only the desktop window hands the server an asker; headless Pushbutton keeps BatchMode=yes.
The socket is a Unix socket (0600) in the run's private (0700) folder and answers only there:
the answer goes to that one ssh (or ssh-add) process, is never logged and never stored. A key
shared by many hosts is asked for once per run because the run's own agent holds it (agent.py).
Cancel makes the helper exit 1: ssh gives up on that prompt, and every later prompt of the same
host is refused without asking.

The helper is this file run by the same Python (`python askpass.py PROMPT`), or in a PyInstaller
build the app itself (`pushbutton askpass PROMPT`, a hidden subcommand): stdlib only below.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

Asker = Callable[[str, str, bool], "str | None"]  # ask(host, prompt, secret) -> answer, None = Cancel
SOCKET_ENV = "PUSHBUTTON_ASKPASS_SOCKET"
HOST_ENV = "PUSHBUTTON_ASKPASS_HOST"  # the host's index in the run
PASSPHRASE = ("Enter passphrase for ", "Bad passphrase, try again for ")  # ssh's and ssh-add's prompts


def helper(argv: list[str]) -> int:
    """ssh's askpass program: print the answer, or exit 1 (Cancel, no server)."""
    prompt = argv[0] if argv else ""
    kind = os.environ.get("SSH_ASKPASS_PROMPT", "")
    if kind == "none":  # information only: nothing to answer
        return 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(os.environ[SOCKET_ENV])
            request = {"host": os.environ.get(HOST_ENV, ""), "prompt": prompt, "secret": kind != "confirm"}
            conn.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer = json.loads(data or b"{}").get("answer")
    except (OSError, KeyError, ValueError):
        return 1
    if answer is None:
        return 1
    sys.stdout.write(answer + "\n")
    return 0


def helper_command() -> list[str]:
    """How to start the helper: the frozen app with its hidden subcommand, or this file."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "askpass"]
    return [sys.executable, str(Path(__file__).resolve())]


class Askpass:
    """One run's askpass socket, served on the server's hub. Create with `open` (blocking calls
    are made in the threadpool by the caller)."""

    def __init__(self, asker: Asker, workdir: Path, names: list[str], aliases: dict[str, str] | None = None):
        self.asker = asker
        self.names = names  # host index -> host name, for the dialog
        # A pinned host's ssh names it by its HostKeyAlias in a prompt: the person knows its address.
        self.aliases = dict(sorted((aliases or {}).items(), key=lambda item: -len(item[0])))  # `-ab` before `-a`
        self.path = workdir / "askpass.sock"
        self.script = workdir / "askpass"
        self.cancelled: dict[int, str] = {}  # host index -> what it was asking when Cancel was pressed
        self.asking: set[int] = set()  # hosts waiting for a person or in line for a dialog: their watchdog waits
        self._server = None

    def open(self) -> None:
        import gevent.lock
        import gevent.socket
        from gevent.server import StreamServer

        command = " ".join(_sh_quote(part) for part in helper_command())
        self.script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        self.script.chmod(0o700)
        listener = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # cooperative: not the stdlib's
        old = os.umask(0o177)  # created 0600: only this user, and the folder is 0700 anyway
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(64)
        self._one_at_a_time = gevent.lock.Semaphore(1)  # one dialog at a time, hosts queue
        self._server = StreamServer(listener, self._handle)
        self._server.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=1)

    def env(self, index: int) -> dict[str, str]:
        """What one host's ssh process needs to ask through us."""
        env = dict(os.environ, SSH_ASKPASS=str(self.script), SSH_ASKPASS_REQUIRE="force",
                   **{SOCKET_ENV: str(self.path), HOST_ENV: str(index)})
        env.setdefault("DISPLAY", ":0")  # OpenSSH before 8.4 ignores REQUIRE and wants a DISPLAY
        return env

    def _handle(self, conn, _address) -> None:
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            request = json.loads(data)
            index = int(request["host"])
            answer = self._answer(index, str(request["prompt"]), bool(request["secret"]))
            conn.sendall(json.dumps({"answer": answer}).encode() + b"\n")
        except (OSError, ValueError, KeyError, IndexError):
            pass
        finally:
            conn.close()

    def _answer(self, index: int, prompt: str, secret: bool) -> str | None:
        from server.events import in_pool

        if index in self.cancelled or not 0 <= index < len(self.names):
            return None
        # Waiting for a person from now on, also while another host's dialog is open before this
        # one's: the host's connect watchdog (ssh.py, _give_up) must not take it for a silent host.
        self.asking.add(index)
        try:
            with self._one_at_a_time:
                if index in self.cancelled:
                    return None
                for alias, address in self.aliases.items():
                    prompt = prompt.replace(alias, address)
                answer = in_pool(self.asker, self.names[index], prompt.strip(), secret)
        except Exception:  # the window is closing, or the dialog failed: as Cancel
            answer = None
        finally:
            self.asking.discard(index)
        if answer is None:
            self.cancelled[index] = "passphrase" if prompt.startswith(PASSPHRASE) else "password"
        return answer


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    sys.exit(helper(sys.argv[1:]))


def ssh_env(askpass: Askpass | None, index: int, agent: Path | None = None) -> dict[str, str] | None:
    """The environment of one host's ssh processes: None (BatchMode: nobody to ask) without an
    askpass; else one that asks through it, with the run's agent when it holds the host's key."""
    if askpass is None:
        return None
    env = askpass.env(index)
    if agent is not None:
        env["SSH_AUTH_SOCK"] = str(agent)
    return env
