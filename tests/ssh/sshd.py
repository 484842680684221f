"""Real OpenSSH servers for the SSH tests and bench/ssh.py: each "host" is one `sshd -D` on
127.0.0.1 with its own port and ed25519 host key. Logins use a dedicated user whose shell is
/bin/sh: sshd refuses signal requests for root, and root's bash start-up files are slow.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
USER = "pbtest"
# Every lab host greets logins, as many real ones do; the banner's last line has no newline, so
# whatever ssh prints next shares its line. None of it is a command's output.
BANNER = "Authorized access only: {name} is monitored.\nBANNER-LINE-WITHOUT-NEWLINE "

CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
PrintMotd no
Banner {dir}/banner
LogLevel VERBOSE
MaxStartups 500
MaxSessions 200
SetEnv TESTHOST={name}
"""


def missing() -> str | None:
    """Why real-sshd tests cannot run here, or None."""
    if not os.path.exists(SSHD):
        return f"{SSHD} not found (Debian package openssh-server; .ci/run installs it)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "ssh / ssh-keygen not found (Debian package openssh-client)"
    if os.geteuid() != 0:
        return "the SSH tests start sshd and create a login user: run them as root"
    return None


def ensure_user(name: str = USER) -> None:
    """Create the login user if missing; `usermod -p '*'` unlocks it for key-only logins."""
    if subprocess.run(["id", "-u", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    subprocess.run(["usermod", "-p", "*", "-s", "/bin/sh", name], check=True)


def keygen(path: Path) -> str:
    """A new ed25519 key pair; returns the public key as `TYPE BASE64`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def fingerprint(key: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    name: str
    port: int
    dir: Path
    host_key: str  # public, `ssh-ed25519 AAAA...`
    proc: subprocess.Popen

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def known_hosts_line(self, key: str | None = None) -> str:
        return f"[127.0.0.1]:{self.port} {key or self.host_key}\n"

    def logins(self, key: Path) -> list[int]:
        """For each connection that authenticated with `key` so far, how many sessions (command
        channels) it opened: a ControlMaster connection reused for a second command shows 2."""
        mark = fingerprint(key)
        ports: list[str] = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Accepted publickey") and line.endswith(mark):
                ports.append(line.split(" port ")[1].split()[0])
        text = self.log.read_text(errors="replace")
        return [text.count(f"Starting session: command for {USER} from 127.0.0.1 port {port} ") for port in ports]


class Lab:
    """A temp dir with a user key (authorized), a second key (not), an inspector key (authorized,
    for looking at hosts over a second connection), and any number of sshd.

    `remote_cpu`: the hosts' sessions share one CPU group (see CpuGroup), as if they ran on other
    machines, so a test of this machine's own responsiveness is not measuring 100 sshd."""

    def __init__(self, remote_cpu: bool = False):
        self.cpu = CpuGroup() if remote_cpu else None
        self.root = Path(tempfile.mkdtemp(prefix="pb-sshd-"))
        self.root.chmod(0o755)  # sshd reads authorized_keys as the login user
        self.user_key = self.root / "user_key"
        self.other_key = self.root / "other_key"
        self.inspector_key = self.root / "inspector_key"
        (self.root / "authorized_keys").write_text(keygen(self.user_key) + "\n" + keygen(self.inspector_key) + "\n")
        (self.root / "authorized_keys").chmod(0o644)
        self.other_public = keygen(self.other_key)
        self.scratch = self.root / "scratch"  # where remote jobs may write
        self.scratch.mkdir()
        self.scratch.chmod(0o1777)
        self.servers: list[Sshd] = []
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation dir

    def start(self, name: str, extra: str = "") -> Sshd:
        """One more sshd; `extra` is appended to its sshd_config."""
        folder = self.root / name
        folder.mkdir()
        host_key = keygen(folder / "host_key")
        (folder / "banner").write_text(BANNER.format(name=name))
        for _attempt in range(5):  # a free port may be taken before sshd binds it
            port = free_port()
            (folder / "sshd_config").write_text(CONFIG.format(port=port, dir=folder, root=self.root, name=name) + extra)
            with open(folder / "sshd.log", "w") as log:
                proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                        stdout=log, stderr=subprocess.STDOUT)
            if self.cpu is not None:
                self.cpu.add(proc.pid)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if "Server listening" in (folder / "sshd.log").read_text():
                    server = Sshd(name, port, folder, host_key, proc)
                    self.servers.append(server)
                    return server
                time.sleep(0.01)
            proc.kill()
            proc.wait()
        raise RuntimeError(f"sshd {name} did not start: {(folder / 'sshd.log').read_text()}")

    def known_hosts(self, name: str, lines: list[str]) -> Path:
        path = self.root / name
        path.write_text("".join(lines))
        return path

    def ssh(self, server: Sshd, command: str, timeout: float = 30) -> str:
        """A second, independent connection (plain OpenSSH) for looking at the host."""
        known = self.known_hosts("second_known_hosts", [server.known_hosts_line()])
        out = subprocess.run(
            ["ssh", "-T", "-p", str(server.port), "-i", str(self.inspector_key), "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
             f"{USER}@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def processes(self, server: Sshd, needle: str) -> list[str]:
        """Live (not zombie) processes whose command line contains `needle`, seen over SSH."""
        rows = self.ssh(server, "ps -eww -o stat= -o args=").splitlines()
        return [row for row in rows if needle in row and not row.split()[0].startswith("Z")
                and "ps -eww" not in row]

    def close(self) -> None:
        for server in self.servers:
            server.proc.terminate()
        for server in self.servers:
            try:
                server.proc.wait(5)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.cpu is not None:
            self.cpu.close()


class CpuGroup:
    """A cgroup (v1 `cpu` or v2) for the lab's sshd and every session they start, at one program's
    CPU weight. Without it each SSH session is its own session, so Linux's autogroup scheduling
    gives each as much CPU weight as the whole browser: 100 "remote" hosts on this machine would
    take 100 shares of its two cores. Not the least weight: on a machine busy with other programs
    the hosts then got no CPU, and a 100-host fan-out ended 98 unreachable. (The page test counts its
    tasks' CPU time, so what the hosts' share leaves the page to wait is not its figure.) Where
    cgroups cannot be written, nothing."""

    ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))

    def __init__(self):
        self.path: Path | None = None
        for root in self.ROOTS:
            if (root / "cgroup.procs").exists() and ((root / "cpu.shares").exists() or root == self.ROOTS[1]):
                path = root / f"pushbutton-lab-{os.getpid()}-{id(self)}"
                try:
                    path.mkdir()
                except OSError:
                    continue
                self.path = path
                weight, one = ("cpu.shares", "1024") if (path / "cpu.shares").exists() else ("cpu.weight", "100")
                with suppress(OSError):  # all the hosts together: as much as one program of ours
                    (path / weight).write_text(one)
                return

    def add(self, pid: int) -> None:
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as procs:
                procs.write(str(pid))

    def close(self) -> None:
        if self.path is None:
            return
        deadline = time.monotonic() + 5  # the sessions' last processes may take a moment to go
        while time.monotonic() < deadline:
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def host_section(lab: Lab, server: Sshd, name: str | None = None, **keys: str | Path) -> str:
    """A [host:NAME] section logging in as USER with the lab's key and a known_hosts of all servers."""
    values = {"address": "127.0.0.1", "port": server.port, "user": USER, "identity": lab.user_key,
              "known_hosts": lab.root / "known_hosts", **keys}
    body = "".join(f"{key} = {value}\n" for key, value in values.items())
    return f"[host:{name or server.name}]\n{body}\n"


def write_known_hosts(lab: Lab) -> Path:
    return lab.known_hosts("known_hosts", [server.known_hosts_line() for server in lab.servers])


class SlowProxy:
    """A host that is slow to answer: accepts TCP at once, forwards to `port` only after `delay`
    seconds (so ssh waits for the SSH banner meanwhile, as with a far or busy host)."""

    def __init__(self, port: int, delay: float):
        self.target, self.delay = port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        time.sleep(self.delay)
        with client, socket.create_connection(("127.0.0.1", self.target)) as server:
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
            self._pipe(client, server)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
