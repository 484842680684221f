"""Pinned host keys (`[host:NAME] host_key`): the private known-hosts file ssh is pointed at, and
`pushbutton hosts --keys`, which reads every host's current keys for ops to review and pin.

Why pins in jobs.ini: the trust travels with the job definitions, so a new machine serving them
needs no `known_hosts` of its own and never trusts a key on first use (docs/ssh.md).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from server.catalog_hosts import Host, fingerprint

KEYSCAN = "ssh-keyscan"


def alias(host: Host) -> str:
    """The name ssh looks the key up under (HostKeyAlias): the same whatever the address, port or
    the user's ~/.ssh/config (HostName) make of it."""
    return f"pushbutton-host-{host.name}"


def pinned_file(host: Host, workdir: Path) -> Path:
    """`workdir/NAME.known_hosts` (0600) with the host's pinned keys; written once per workdir."""
    path = workdir / f"pinned-{host.name}.known_hosts"
    text = "".join(f"{alias(host)} {key}\n" for key in host.host_keys)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # this run's other ssh process for the host wrote the same lines
        return path
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
    return path


def scan(host: Host) -> tuple[list[str], str]:
    """The keys `host` offers now (`TYPE BASE64`, sorted), or [] and why not."""
    timeout = max(1, math.ceil(host.connect_timeout))
    argv = [shutil.which(KEYSCAN) or KEYSCAN, "-p", str(host.port), "-T", str(timeout), "--", host.address]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=3 * timeout + 10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"cannot run {KEYSCAN}: {getattr(exc, 'strerror', None) or exc}"
    keys = sorted({" ".join(line.split()[1:3]) for line in out.stdout.splitlines()
                   if line.strip() and not line.startswith("#") and len(line.split()) >= 3})
    if not keys:
        said = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("#")]
        return [], said[-1] if said else f"no answer from {host.address}:{host.port} within {timeout}s"
    return keys, ""


def mark(host: Host, key: str) -> str:
    """pinned: this very key is pinned; differs: another key of its type is pinned; new: none is."""
    if key in host.host_keys:
        return "pinned"
    kind = key.split()[0]
    return "differs" if any(pin.split()[0] == kind for pin in host.host_keys) else "new"


def print_keys(hosts: list[Host]) -> int:
    """`pushbutton hosts --keys`; exit 1 if a host did not answer, offers a key that differs from
    its pin of the same type, or offers none of its pinned keys (runs there fail)."""
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(scan, hosts))
    print("# Current host keys. Verify each fingerprint out of band (from the host's console or its admin)\n"
          "# before pasting a host_key line into jobs.ini: this scan itself could be intercepted.")
    status = 0
    for host, (keys, why) in zip(hosts, found, strict=True):
        print(f"\n[host:{host.name}]  # {host.address}:{host.port}")
        if not keys:
            print(f"# cannot read its keys: {why}")
            status = 1
            continue
        print("host_key = " + ", ".join(keys))
        for key in keys:
            status |= mark(host, key) == "differs"
            print(f"#   {key.split()[0]:<22} {fingerprint(key)}  {mark(host, key)}")
        for pin in host.host_keys:
            if pin not in keys:
                print(f"#   pinned {pin.split()[0]} {fingerprint(pin)} is no longer offered")
        if host.host_keys and not set(keys) & set(host.host_keys):
            print("# none of its pinned keys is offered: every run there fails until they are reviewed")
            status = 1
    return int(status)
