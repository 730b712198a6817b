"""Runtime fixtures: test keys and a factory that deploys a RuntimeSettings' parameters into moto."""

from __future__ import annotations

import base64
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from snowsage import keys
from snowsage.credentials import boto3_fetcher
from snowsage.diagnostics import Timeouts
from snowsage.settings import RuntimeSettings
from tests.conftest import ServerProcess, make_settings, put_parameters, sandbox_values

PASSPHRASE = "correct horse battery staple 42"
PASSWORD = "S3cret-sandbox-password!"

# Short enough that failure cases stay fast, long enough for a loaded 2-core machine.
FAST = Timeouts(settings=8, dns=3, tcp=1.5, tls=1.5, ocsp=1, login=3, query=5, warehouse=5, total=30)


@dataclass(frozen=True)
class TestKey:
    pem: str
    encrypted_pem: str

    def secret_fragments(self) -> list[str]:
        """Strings that must never show up in output: PEM bodies (plain, encrypted) and the DER form."""
        key = keys.load_private_key(self.pem)
        der_b64 = base64.b64encode(keys.private_key_der(key)).decode()
        bodies = [_pem_body(self.pem), _pem_body(self.encrypted_pem), der_b64]
        # Any 40-character run of a body is enough to call it a leak (catches wrapped lines too).
        return [b[i : i + 40] for b in bodies for i in range(0, len(b) - 40, 200)]


def _pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


@pytest.fixture(scope="session")
def test_key() -> TestKey:
    key = keys.generate_private_key()
    return TestKey(pem=keys.private_key_to_pem(key), encrypted_pem=keys.private_key_to_pem(key, PASSPHRASE))


Deploy = Callable[..., RuntimeSettings]


@pytest.fixture
def deploy(ssm_client: Any, kms_key_id: str, fakesnow_server: ServerProcess) -> Deploy:
    """deploy(auth, wif_user=..., **values) -> RuntimeSettings; parameters in moto, pointing at fakesnow.

    Each call uses a fresh env name, so tests never see each other's parameters.
    """

    def _deploy(auth: str = "keypair", *, wif_user: str = "", **values: str | None) -> RuntimeSettings:
        settings = make_settings(f"t{uuid.uuid4().hex[:10]}", auth, user=wif_user)
        put_parameters(ssm_client, settings, sandbox_values(fakesnow_server, **values), kms_key_id=kms_key_id)
        return settings

    return _deploy


@pytest.fixture
def fetch(ssm_client: Any) -> Any:
    return boto3_fetcher(ssm_client)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
