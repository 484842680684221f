"""A real nginx in front of Pushbutton, run with the site config from docs/deploy.md.

The doc's config is what ops copy into /etc/nginx/sites-available; the tests take it from the doc
(so the doc cannot drift from what works) and change only what a test must: the listening port,
the certificate, the password file, the proxy secret's file and Pushbutton's port. Each change must match exactly once,
so a doc edit that moves them fails here rather than testing something else. The config runs
inside a generated nginx.conf that keeps pid, logs and temp files in a temp dir, in the
foreground (`daemon off`), as a child of the test.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NGINX = "/usr/sbin/nginx"
SECRET = "test-proxy-secret-0123456789abcdef"  # what the doc's proxy-secret include sends
DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"

MAIN = """\
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def missing() -> str | None:
    """Why real-nginx tests cannot run here, or None."""
    if not os.path.exists(NGINX):
        return f"{NGINX} not found (Debian package nginx; scripts/setup.sh test installs it)"
    return None


def doc_site_config() -> str:
    """The one ```nginx block of docs/deploy.md."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, f"docs/deploy.md must hold exactly one ```nginx block, not {len(blocks)}"
    return blocks[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"docs/deploy.md's nginx config should contain {old!r} exactly once"
    return text.replace(old, new)


@dataclass
class Nginx:
    port: int
    dir: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return (self.dir / "error.log").read_text(errors="replace")


def start(dir: Path, upstream_port: int, cert: Path, key: Path, htpasswd: Path) -> Nginx:
    """nginx on a free loopback port with the doc's site, proxying to Pushbutton on upstream_port."""
    dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = doc_site_config()
    site = replace_once(site, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = replace_once(site, "/etc/ssl/certs/ops.example.com.pem", str(cert))
    site = replace_once(site, "/etc/ssl/private/ops.example.com.key", str(key))
    site = replace_once(site, "/etc/nginx/pushbutton.htpasswd", str(htpasswd))
    site = replace_once(site, "http://127.0.0.1:8000", f"http://127.0.0.1:{upstream_port}")
    site = replace_once(site, "/etc/nginx/pushbutton-proxy-secret.conf", str(dir / "proxy-secret.conf"))
    (dir / "proxy-secret.conf").write_text(f"proxy_set_header X-Pushbutton-Proxy-Secret {SECRET};\n")
    (dir / "site.conf").write_text(site)
    (dir / "nginx.conf").write_text(MAIN.format(dir=dir))
    check = subprocess.run([NGINX, "-t", "-p", str(dir), "-c", str(dir / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t refused the config:\n{check.stderr}\n{site}"
    proc = subprocess.Popen([NGINX, "-p", str(dir), "-c", str(dir / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(dir / "stderr.log", "w"))  # noqa: SIM115
    nginx = Nginx(port, dir, proc)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                nginx.stop()
                raise RuntimeError(f"nginx did not start:\n{(dir / 'stderr.log').read_text()}\n{nginx.log()}") from None
            time.sleep(0.05)
