"""Remote hosts in jobs.ini: `[host:NAME]`, `[group:NAME]`, and a job's `targets`.

The reader (`server.catalog._Reader`) mixes `HostChecks` in: it provides `problem`, `convert`,
`lines` and `path`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from server.catalog_values import parse_duration, port, positive_duration, positive_int, ssh_address, ssh_user
from server.params import split_list


@dataclass
class Host:
    """One SSH target: where to connect, as whom, and which host keys to trust."""

    name: str
    address: str = ""
    port: int = 22
    user: str | None = None  # None: ssh's default (the local user, or ~/.ssh/config)
    identity: Path | None = None  # None: the SSH agent, then the user's default keys
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts (and the system-wide file)
    connect_timeout: float = 10.0
    host_keys: tuple[str, ...] = ()  # `TYPE BASE64` each; when given, the only keys trusted (known_hosts ignored)
    control_persist: float = 60.0  # seconds the connection stays open for the next session; 0: not kept


@dataclass
class Group:
    name: str
    members: list[str]  # host names, and group:NAME for nested groups
    parallel: int = 10


@dataclass(frozen=True)
class Target:
    """One host of a job, and the group (named in `targets`) whose `parallel` cap it counts against."""

    host: Host
    group: str | None = None
    parallel: int = 1


def host_keys(raw: str) -> tuple[str, ...]:
    """`host_key = TYPE BASE64, TYPE BASE64`: each checked as ssh would read it, so a truncated or
    mislabelled paste fails `check` rather than every run on that host."""
    keys = []
    for item in split_list(raw):
        kind, _, data = item.partition(" ")
        data = data.strip()
        short = item if len(item) <= 40 else item[:37] + "..."
        if not kind or not data or " " in data:
            raise ValueError(f"{short!r}: expected TYPE BASE64, e.g. ssh-ed25519 AAAAC3Nz... (no comment)")
        check_key(kind, key_blob(data, short), short)
        keys.append(f"{kind} {data}")
    if not keys:
        raise ValueError("host_key is empty; leave it out to trust known_hosts")
    return tuple(dict.fromkeys(keys))


def key_blob(data: str, label: str = "key") -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{label!r}: the key data is not valid base64") from None


# The fields after the type, per key type (RFC 4253, 5656, 8709; OpenSSH's PROTOCOL.u2f), with the
# exact length of those that have one: a paste cut short or run together fails check.
ECDSA = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
FIELDS: dict[str, tuple[int | None, ...]] = {
    "ssh-ed25519": (32,),
    "ssh-rsa": (None, None),  # e, n
    "ssh-dss": (None, None, None, None),  # p, q, g, y
    **{f"ecdsa-sha2-{curve}": (len(curve), size) for curve, size in ECDSA.items()},
    "sk-ssh-ed25519@openssh.com": (32, None),  # key, application
    "sk-ecdsa-sha2-nistp256@openssh.com": (8, 65, None),
}


def check_key(kind: str, blob: bytes, label: str) -> None:
    """The key as ssh reads it: its own type, every field whole, nothing after the last."""
    fields = wire_fields(blob)
    if fields is None or not fields:
        raise ValueError(f"{label!r}: the key data is cut short or damaged (paste the whole line)")
    if fields[0].decode("ascii", "replace") != kind:
        raise ValueError(f"{label!r}: the key data is not a {kind} key")
    if kind.endswith("-cert-v01@openssh.com"):
        raise ValueError(f"{label!r}: a certificate, not a host key: pin the host's own key "
                         "(`pushbutton hosts --keys` prints it)")
    expected = FIELDS.get(kind)
    if expected is None:
        return  # a type this check does not know: ssh will say if it cannot use it
    rest = fields[1:]
    whole = len(rest) == len(expected) and all(size is None or len(field) == size
                                               for field, size in zip(rest, expected, strict=True))
    if not whole:
        raise ValueError(f"{label!r}: the key data is cut short or damaged (paste the whole line)")
    if kind.startswith(("ecdsa-", "sk-ecdsa-")) and not kind.split("@")[0].endswith(rest[0].decode("ascii", "replace")):
        raise ValueError(f"{label!r}: the key data is not a {kind} key")


def wire_fields(blob: bytes) -> list[bytes] | None:
    """The SSH wire format's length-prefixed strings; None if the last is incomplete."""
    fields, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            return None
        (size,) = struct.unpack(">I", blob[at:at + 4])
        if at + 4 + size > len(blob):
            return None
        fields.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return fields


def fingerprint(key: str) -> str:
    """`TYPE BASE64` -> `SHA256:...`, as `ssh-keygen -l` and ssh's own messages print it."""
    digest = hashlib.sha256(key_blob(key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class HostChecks:
    """The reader's `[host:NAME]` and `[group:NAME]` sections and `targets` keys."""

    def host(self, name: str, section: str, items) -> Host:
        host = Host(name=name)
        for key, raw in items.items():
            if key == "address":
                host.address = self.convert(section, key, raw, ssh_address, "")
            elif key == "user":
                host.user = self.convert(section, key, raw, ssh_user)
            elif key == "port":
                host.port = self.convert(section, key, raw, port, 22)
            elif key == "connect_timeout":
                host.connect_timeout = self.convert(section, key, raw, positive_duration, 10.0)
            elif key == "control_persist":
                host.control_persist = self.convert(section, key, raw, parse_duration, 60.0)
            elif key in ("identity", "known_hosts"):
                setattr(host, key, self.key_file(section, key, raw))
            elif key == "host_key":
                host.host_keys = self.convert(section, key, raw, host_keys, ())
            else:
                self.problem(section, key, "unknown key")
        if not host.address and (section, "address") not in self.lines.keys:
            self.problem(section, None, "missing address")
        return host

    def key_file(self, section: str, key: str, raw: str) -> Path | None:
        """A file ssh must read: checked now, so a typo fails `check` rather than a run."""
        path = (self.path.parent / os.path.expanduser(raw)).resolve()
        what = "key file" if key == "identity" else "known_hosts file"
        if '"' in str(path) or "\n" in str(path):
            self.problem(section, key, f"{what} path may not contain quotes or newlines")
            return None
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.problem(section, key, f"cannot read {what} {str(path)!r}: {exc.strerror}")
            return None
        if key == "identity" and os.name == "posix" and path.stat().st_mode & 0o077:
            self.problem(section, key, f"key file {str(path)!r} is readable by other users and ssh refuses "
                         "it; run chmod 600 on it")
        return path

    def group(self, name: str, section: str, items) -> Group:
        group = Group(name=name, members=[])
        for key, raw in items.items():
            if key == "hosts":
                group.members = split_list(raw)
            elif key == "parallel":
                group.parallel = self.convert(section, key, raw, positive_int, 10)
            else:
                self.problem(section, key, "unknown key")
        if not group.members:
            self.problem(section, "hosts", "a group needs hosts = NAME, NAME, ...")
        return group

    def expand(self, name: str, hosts: dict[str, Host], groups: dict[str, Group],
               path: tuple[str, ...] = ()) -> list[str]:
        """A group's host names, nested groups flattened in order. Unknown names are reported at
        the group that names them, each cycle once."""
        path = (*path, name)
        out: list[str] = []
        for member in groups[name].members:
            kind, _, ref = member.rpartition(":")
            if kind == "group" and ref in path:
                cycle = (*path[path.index(ref):], ref)
                if ref == path[0] == min(cycle):
                    self.problem(f"group:{name}", "hosts", "group cycle: " + " -> ".join(cycle))
            elif kind == "group" and ref in groups:
                out += self.expand(ref, hosts, groups, path)
            elif kind in ("", "host") and ref in hosts:
                out.append(ref)
            elif len(path) == 1:
                hint = f" (for the group, write group:{ref})" if ref in groups else ""
                self.problem(f"group:{name}", "hosts", f"unknown {kind or 'host'} {ref!r}{hint}")
        return list(dict.fromkeys(out))

    def targets(self, section: str, raw: str, hosts: dict[str, Host], groups: dict[str, Group],
                expanded: dict[str, list[str]]) -> list[Target]:
        found: dict[str, Target] = {}
        if not split_list(raw):
            self.problem(section, "targets", "targets is empty; leave it out to run on this machine")
        for item in split_list(raw):
            kind, _, name = item.partition(":")
            if kind == "host" and name in hosts:
                found.setdefault(name, Target(hosts[name]))
            elif kind == "group" and name in groups:
                for host in expanded[name]:
                    found.setdefault(host, Target(hosts[host], name, groups[name].parallel))
            elif kind in ("host", "group"):
                self.problem(section, "targets", f"unknown {kind} {name!r}")
            else:
                self.problem(section, "targets", f"{item!r}: expected host:NAME or group:NAME")
        return list(found.values())
