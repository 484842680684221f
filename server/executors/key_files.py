"""A host's `identity` key file, read as ssh reads it, for what explain() says when a login fails:
whether the key needs a passphrase, and whether the agent ssh sees holds it. Headless, ssh runs
with BatchMode, so such a key with no agent holding it is never used and the host says
`Permission denied`, though nothing refused the key: nobody could type its passphrase.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path

import gevent
import gevent.socket

OPENSSH = b"openssh-key-v1\0"
MAX_KEY_FILE = 64 * 1024  # an RSA 16384 key is ~12 KB: anything larger is not a key
REQUEST_IDENTITIES, IDENTITIES_ANSWER = 11, 12  # the agent protocol's (draft-miller-ssh-agent)
AGENT_TIMEOUT = 2.0


def needs_passphrase(path: Path) -> bool:
    """Whether the private key at `path` is encrypted: OpenSSH's own format (its cipher is not
    `none`), legacy PEM (`Proc-Type: 4,ENCRYPTED`) or PKCS#8 (`ENCRYPTED PRIVATE KEY`). False when
    it cannot be read or is none of these: then nothing is claimed about it."""
    text = _read(path)
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
        return True
    fields = _openssh_fields(text)
    return bool(fields) and fields[0] not in (b"", b"none")


def agent_holds(path: Path, socket_path: str | None = None) -> bool:
    """Whether the agent at `socket_path` (SSH_AUTH_SOCK) holds the key at `path`, as ssh would
    match it (its public key, from PATH.pub or the key file's public part). False when there is no
    agent, it does not answer, or the public key cannot be read: ssh could not have used it either."""
    socket_path = socket_path or os.environ.get("SSH_AUTH_SOCK")
    blob = _public_blob(path)
    if not socket_path or blob is None:
        return False
    try:
        with gevent.Timeout(AGENT_TIMEOUT), gevent.socket.socket(gevent.socket.AF_UNIX) as agent:
            agent.connect(socket_path)
            agent.sendall(struct.pack(">IB", 1, REQUEST_IDENTITIES))
            size = struct.unpack(">I", _exactly(agent, 4))[0]
            answer = _exactly(agent, min(size, 1 << 20))
    except (OSError, gevent.Timeout, struct.error, EOFError):
        return False
    if len(answer) < 5 or answer[0] != IDENTITIES_ANSWER:
        return False
    count, rest = struct.unpack(">I", answer[1:5])[0], answer[5:]
    try:
        for _ in range(count):
            key, rest = _string(rest)
            _comment, rest = _string(rest)
            if key == blob:
                return True
    except ValueError:  # cut short
        pass
    return False


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(MAX_KEY_FILE).decode("ascii", "replace")
    except OSError:
        return ""


def _openssh_fields(text: str) -> list[bytes]:
    """An OpenSSH private key's cipher, KDF, KDF options and first public key; [] if it is not one."""
    begin, end = "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"
    if begin not in text or end not in text:
        return []
    try:
        data = base64.b64decode("".join(text.split(begin, 1)[1].split(end, 1)[0].split()), validate=True)
    except (binascii.Error, ValueError):
        return []
    if not data.startswith(OPENSSH):
        return []
    rest = data[len(OPENSSH):]
    try:
        cipher, rest = _string(rest)
        kdf, rest = _string(rest)
        options, rest = _string(rest)
        rest = rest[4:]  # the number of keys: one, as ssh-keygen writes them
        public, rest = _string(rest)
    except ValueError:
        return []
    return [cipher, kdf, options, public]


def _public_blob(path: Path) -> bytes | None:
    words = _read(Path(f"{path}.pub")).split()
    if len(words) >= 2:
        try:
            return base64.b64decode(words[1], validate=True)
        except (binascii.Error, ValueError):
            return None
    fields = _openssh_fields(_read(path))
    return fields[3] if fields else None


def _string(data: bytes) -> tuple[bytes, bytes]:
    """One SSH `string` (a uint32 length, then the bytes) and what follows it."""
    if len(data) < 4:
        raise ValueError("short")
    size = struct.unpack(">I", data[:4])[0]
    if len(data) < 4 + size:
        raise ValueError("short")
    return data[4:4 + size], data[4 + size:]


def _exactly(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
