"""Search what the CLI showed (stdout, stderr, logs) for private key, passphrase and password material."""

from __future__ import annotations

import base64

from snowsage import keys


def key_fragments(pem: str, passphrase: str | None = None) -> list[str]:
    """Pieces of a private key that must never be shown: its PEM body lines and its DER in base64."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    der = base64.b64encode(keys.private_key_der(keys.load_private_key(pem, passphrase))).decode()
    # 40-character windows of the unencrypted key catch a re-encoded dump as well as the stored PEM.
    return body + [der[i : i + 40] for i in range(0, len(der) - 40, 200)]


def assert_not_shown(shown: str, *secrets: str) -> None:
    assert "PRIVATE KEY-----" not in shown, "a PEM private key block was shown"
    for secret in secrets:
        assert secret, "empty secret given to the scan"
        assert secret not in shown, f"secret material was shown: {secret[:6]}..."
