"""RSA key pairs for Snowflake key-pair authentication, made and checked with ``cryptography``."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALLOWED_BITS = (2048, 4096)


class PrivateKeyError(ValueError):
    """A private key that cannot be used; the message says why and what to do, never the key."""


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits not in ALLOWED_BITS:
        raise PrivateKeyError(
            f"key size {bits} is not supported; use one of {', '.join(map(str, ALLOWED_BITS))}"
        )
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def require_supported_size(key: rsa.RSAPrivateKey) -> None:
    """Snowflake refuses RSA keys under 2048 bits; catch that before the key is stored."""
    if key.key_size < min(ALLOWED_BITS):
        raise PrivateKeyError(
            f"the key is {key.key_size}-bit RSA; Snowflake needs at least {min(ALLOWED_BITS)} bits: "
            "make a new one with `snowsage keypair generate` (2048 or 4096 bits)"
        )


def private_key_to_pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> str:
    """PKCS#8 PEM, encrypted with the passphrase when one is given (Snowflake's accepted forms)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def load_private_key(pem: str | bytes, passphrase: str | None = None) -> rsa.RSAPrivateKey:
    """Load a PEM private key; errors name the problem and the fix and never include key material."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY-----" not in data:
        raise PrivateKeyError(
            "the value is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block); "
            "store a PKCS#8 PEM key, e.g. with `snowsage keypair generate`"
        )
    pw = passphrase.encode() if passphrase else None
    try:
        key = serialization.load_pem_private_key(data, password=pw)
    except TypeError:
        if pw is None:
            raise PrivateKeyError(
                "the private key is encrypted but no passphrase is set; set the passphrase "
                "parameter (`snowsage credentials set --private-key-file F` asks for it)"
            ) from None
        raise PrivateKeyError(
            "a passphrase is set but the private key is not encrypted; clear the passphrase "
            "parameter or store the encrypted key"
        ) from None
    except ValueError:
        if pw is not None:
            raise PrivateKeyError(
                "the passphrase does not open the private key (or the key is corrupt); set the "
                "passphrase the key was encrypted with"
            ) from None
        raise PrivateKeyError(
            "the private key could not be parsed (corrupt or unsupported PEM); store a PKCS#8 "
            "RSA key, e.g. with `snowsage keypair generate`"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PrivateKeyError(
            f"the private key is {type(key).__name__.removeprefix('_')}, but Snowflake key-pair "
            "authentication needs RSA; generate one with `snowsage keypair generate`"
        )
    return key


def is_encrypted_pem(data: bytes) -> bool:
    """Whether the PEM needs a passphrase; anything that does not load is for load_private_key to explain."""
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is reported by load_private_key
        return False
    return False


def public_key_der(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_body(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The base64 body Snowflake expects in ``ALTER USER ... SET RSA_PUBLIC_KEY='...'``."""
    return base64.b64encode(public_key_der(key)).decode()


def fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """``SHA256:`` + base64 SHA-256 of the DER public key, as ``DESC USER`` shows RSA_PUBLIC_KEY_FP."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_key_der(key)).digest()).decode()


def private_key_der(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER, the form the connector's ``private_key`` argument accepts."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
