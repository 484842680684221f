"""Fixtures for the edge tests: a self-signed certificate, and servers reached over TLS."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import TOKEN


@dataclass
class Cert:
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only this certificate (and checks its name)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_cert(folder: Path, name: str = "localhost") -> Cert:
    """A fresh self-signed certificate for `name` and 127.0.0.1, from the machine's openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"], check=True, capture_output=True)
    return Cert(cert, key)


@pytest.fixture
def cert(tmp_path) -> Cert:
    return make_cert(tmp_path / "tls")


def tls_client(pb, cert: Cert, **kwargs) -> httpx.Client:
    """A real TLS client for a server started with --certfile: verifies the certificate."""
    kwargs.setdefault("headers", {"Authorization": f"Bearer {TOKEN}"})
    pb.client = httpx.Client(base_url=pb.url, verify=cert.context(), timeout=30, **kwargs)
    return pb.client
