"""What tests of every tier share: where the checkout is, client ids, TLS files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def cid(tag: str | None = None) -> bytes:
    """A client id: a fresh random one, or (given a tag) the same id for the same tag, so a
    test can send an op again under its first id."""
    if tag is None:
        return os.urandom(16)
    return tag.encode().ljust(16, b".")[:16]


def mutual_tls_files(d: Path) -> dict[str, str]:
    """A test CA, and a server and a client certificate it signed (for 127.0.0.1 and
    localhost), made with openssl in d: the [tls] table of a server that requires client
    certificates (ca.crt, client.key and client.crt stay in d for the client)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.crt")
    return {"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key"),
            "client_ca_file": str(d / "ca.crt")}
