"""Credentials in SSM: key pairs made and rotated through Snowflake's two public-key slots, a key or
password the operator already has, and what is stored now.

The rotation is a small state machine kept in tags on the private-key parameter: TAG_SLOT is the
live key's slot; during a rotation TAG_RETIRED_SLOT holds the slot of the key being retired, which
``finish_rotation`` hands to the admin to UNSET. Secrets come from ``secret_input`` and leave only
towards SSM (and ``--out``); no result holds one in a field that repr or the renderer shows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from snowsage import keys
from snowsage import setup_sql as sql
from snowsage.credential_store import TagChange, store_together
from snowsage.ops import secret_input
from snowsage.ops.deployment import OperationError, require_auth, service_user
from snowsage.settings import PLACEHOLDER, RuntimeSettings, is_placeholder
from snowsage.stack_outputs import (
    TAG_FINGERPRINT,
    TAG_RETIRED_FINGERPRINT,
    TAG_RETIRED_SLOT,
    TAG_SLOT,
    Deployment,
)

_MAX_KEY_FILE_BYTES = 64 * 1024
# Parameters that may keep the placeholder in a complete set.
_OPTIONAL_KEYS = ("private_key_passphrase", "host", "port", "protocol")


@dataclass(frozen=True)
class GenerateRequest:
    bits: int
    passphrase_stdin: bool
    out: Path | None
    force: bool


@dataclass(frozen=True)
class GeneratedKey:
    parameter: str
    passphrase_parameter: str
    user: str
    bits: int
    fingerprint: str
    sql: str
    encrypted: bool
    out: Path | None
    slot: int = 1


@dataclass(frozen=True)
class RotateRequest:
    bits: int
    passphrase_stdin: bool
    live_slot: int | None


@dataclass(frozen=True)
class RotationPlan:
    """A new key for the free slot, not stored yet: the admin registers it first."""

    parameter: str
    user: str
    live_slot: int
    slot_assumed: bool  # no tag said which slot is live
    live_fingerprint: str
    slot: int
    fingerprint: str
    sql: str
    _key: rsa.RSAPrivateKey = field(repr=False)
    _passphrase: str | None = field(repr=False)


@dataclass(frozen=True)
class RotationStored:
    parameter: str


@dataclass(frozen=True)
class RotationFinished:
    user: str
    unset_slot: int
    sql: str


@dataclass(frozen=True)
class SetCredentialsRequest:
    user: str
    private_key_file: Path | None  # None: a password from stdin
    passphrase_stdin: bool


@dataclass(frozen=True)
class StoredCredentials:
    user: str
    parameters: dict[str, str]  # logical key -> parameter name, in the order written
    fingerprint: str | None = None
    sql: str = ""


@dataclass(frozen=True)
class ParameterState:
    key: str
    parameter: str
    state: str  # set, placeholder or missing
    last_modified: str


@dataclass(frozen=True)
class CredentialsStatus:
    auth: str
    region: str
    env_name: str
    parameters: tuple[ParameterState, ...]
    complete: bool
    fingerprint: str | None = None
    slot: str | None = None  # the live key's column, or "unknown"
    key_error: str | None = None
    rotation_pending: str | None = None  # the column `rotate --finish` unsets


def _register_sql(user: str, slot: int, key: rsa.RSAPrivateKey) -> str:
    return sql.register_key_sql(user, slot, keys.public_key_body(key), keys.fingerprint(key))


def current_key(dep: Deployment, settings: RuntimeSettings) -> tuple[Any | None, str | None]:
    """The stored private key (or None when it is the placeholder) and why it does not load, if so."""
    vals = dep.require_parameters(
        {k: settings.parameters[k] for k in ("private_key", "private_key_passphrase")}
    )
    pem = vals["private_key"].value
    if is_placeholder(pem):
        return None, None
    passphrase = vals["private_key_passphrase"].value
    try:
        return keys.load_private_key(pem, None if is_placeholder(passphrase) else passphrase), None
    except keys.PrivateKeyError as exc:
        return None, str(exc)


def _store_key(
    dep: Deployment, settings: RuntimeSettings, pem: str, passphrase: str | None, tags: TagChange
) -> None:
    store_together(
        dep,
        {
            settings.parameters["private_key"]: pem,
            settings.parameters["private_key_passphrase"]: passphrase or PLACEHOLDER,
        },
        what="private key and passphrase",
        tags=tags,
    )


def _keypair_context(dep: Deployment, what: str) -> tuple[RuntimeSettings, str]:
    settings = dep.settings()
    require_auth(settings, "keypair", what)
    return settings, service_user(dep, settings)


@contextlib.contextmanager
def _new_key_file(out: Path | None) -> Iterator[Callable[[str], None]]:
    """A writer for a new file only its owner can read. The file is made before anything is stored,
    so a clash stops early, and removed again when storing fails."""
    if out is None:
        yield lambda _pem: None
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OperationError(
            f"{out} already exists; snowsage never overwrites a key file: choose a new path"
        ) from None
    except OSError as exc:
        raise OperationError(f"cannot create {out}: {exc.strerror}") from None

    def write(pem: str) -> None:
        os.fchmod(fd, 0o600)
        os.write(fd, pem.encode())

    try:
        yield write
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _new_passphrase(from_stdin: bool) -> str | None:
    return secret_input.read_secret("passphrase", "--passphrase-stdin") if from_stdin else None


def generate(dep: Deployment, req: GenerateRequest) -> GeneratedKey:
    """A new key in slot 1, stored in SSM (and ``req.out``); refuses to replace one without force."""
    settings, user = _keypair_context(dep, "keypair generate")
    param = settings.parameters["private_key"]
    existing, broken = current_key(dep, settings)
    if (existing is not None or broken) and not req.force:
        what = f"key {keys.fingerprint(existing)}" if existing is not None else "a key"
        raise OperationError(
            f"{param} already holds {what}; use `snowsage keypair rotate` to "
            "replace it without downtime, or --force to overwrite it"
        )
    passphrase = _new_passphrase(req.passphrase_stdin)
    with _new_key_file(req.out) as write_key_file:
        key = keys.generate_private_key(req.bits)
        pem = keys.private_key_to_pem(key, passphrase)
        fp = keys.fingerprint(key)
        _store_key(
            dep,
            settings,
            pem,
            passphrase,
            TagChange(
                param,
                {TAG_SLOT: "1", TAG_FINGERPRINT: fp},
                remove=(TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT),
            ),
        )
        write_key_file(pem)
    return GeneratedKey(
        parameter=param,
        passphrase_parameter=settings.parameters["private_key_passphrase"],
        user=user,
        bits=req.bits,
        fingerprint=fp,
        sql=_register_sql(user, 1, key),
        encrypted=bool(passphrase),
        out=req.out,
    )


def plan_rotation(dep: Deployment, req: RotateRequest) -> RotationPlan:
    """A new key for the slot the live key does not use; nothing is stored yet."""
    settings, user = _keypair_context(dep, "keypair rotate")
    param = settings.parameters["private_key"]
    tags = dep.tags(param)
    current, broken = current_key(dep, settings)
    if current is None:
        why = broken or f"{param} holds no key yet"
        raise OperationError(
            f"nothing to rotate: {why}; run `snowsage keypair generate --force` to start afresh"
        )
    live = int(req.live_slot or tags.get(TAG_SLOT) or 0)
    assumed = not live
    live = live or 1
    new_slot = 3 - live
    passphrase = _new_passphrase(req.passphrase_stdin)
    key = keys.generate_private_key(req.bits)
    return RotationPlan(
        parameter=param,
        user=user,
        live_slot=live,
        slot_assumed=assumed,
        live_fingerprint=keys.fingerprint(current),
        slot=new_slot,
        fingerprint=keys.fingerprint(key),
        sql=_register_sql(user, new_slot, key),
        _key=key,
        _passphrase=passphrase,
    )


def complete_rotation(dep: Deployment, plan: RotationPlan, *, confirmed: bool) -> RotationStored:
    """Store the planned key once the admin has registered it; the old key's slot is remembered
    for ``finish_rotation``."""
    if not confirmed:
        raise OperationError(
            f"rotation cancelled; nothing was stored and the key in {sql.slot_column(plan.live_slot)} "
            "stays live; run `snowsage keypair rotate` again when the admin is ready"
        )
    _store_key(
        dep,
        dep.settings(),
        keys.private_key_to_pem(plan._key, plan._passphrase),
        plan._passphrase,
        TagChange(
            plan.parameter,
            {
                TAG_SLOT: str(plan.slot),
                TAG_FINGERPRINT: plan.fingerprint,
                TAG_RETIRED_SLOT: str(plan.live_slot),
                TAG_RETIRED_FINGERPRINT: plan.live_fingerprint,
            },
        ),
    )
    return RotationStored(plan.parameter)


def finish_rotation(dep: Deployment) -> RotationFinished:
    """The UNSET that retires the old key; the rotation is then over as far as the tags go."""
    settings, user = _keypair_context(dep, "keypair rotate")
    param = settings.parameters["private_key"]
    tags = dep.tags(param)
    retired = tags.get(TAG_RETIRED_SLOT)
    if retired not in ("1", "2"):
        raise OperationError("no rotation to finish: run `snowsage keypair rotate` first")
    text = sql.retire_key_sql(
        user, int(retired), tags.get(TAG_RETIRED_FINGERPRINT), tags.get(TAG_FINGERPRINT, "")
    )
    dep.set_tags(param, {}, remove=(TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT))
    return RotationFinished(user, int(retired), text)


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise OperationError(f"{path} is larger than any PEM private key; pass the key file itself")
        return path.read_bytes()
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}") from None


def _key_file_passphrase(path: Path, data: bytes, from_stdin: bool) -> str | None:
    if from_stdin:
        return secret_input.read_secret("passphrase", "--passphrase-stdin")
    if not keys.is_encrypted_pem(data):
        return None
    if not secret_input.stdin_is_terminal():  # click.prompt would read EOF and print a bare "Aborted!"
        raise OperationError(
            f"{path} is encrypted and there is no terminal to ask for its "
            "passphrase; pipe the passphrase in with --passphrase-stdin"
        )
    return secret_input.read_secret("passphrase", "--passphrase-stdin", f"Passphrase for {path}")


def set_credentials(dep: Deployment, req: SetCredentialsRequest) -> StoredCredentials:
    """Validate the user and its key (or password) and store them together; nothing is written if
    anything is wrong."""
    sql.identifier(req.user, "service user")
    settings = dep.settings()
    path = req.private_key_file
    require_auth(
        settings,
        "keypair" if path else "password",
        "--private-key-file" if path else "--password-stdin",
    )
    by_key = settings.secret_parameter_names()
    dep.require_parameters(by_key)  # every target exists before anything is written

    # The secret first (see credential_store), the user last: all three only work together.
    writes: dict[str, str] = {}
    key = None
    if path:
        data = _read_key_file(path)
        passphrase = _key_file_passphrase(path, data, req.passphrase_stdin)
        try:
            key = keys.load_private_key(data, passphrase)
            keys.require_supported_size(key)
        except keys.PrivateKeyError as exc:
            raise OperationError(f"{path}: {exc}") from None
        writes["private_key"] = keys.private_key_to_pem(key, passphrase)  # normalised to PKCS#8
        writes["private_key_passphrase"] = passphrase or PLACEHOLDER
    else:
        writes["password"] = secret_input.read_secret("password", "--password-stdin")
    writes["user"] = req.user

    tags = None
    if key is not None:
        # The key's Snowflake slot is unknown; `keypair rotate` asks for it (--live-slot) if needed.
        tags = TagChange(
            by_key["private_key"],
            {TAG_FINGERPRINT: keys.fingerprint(key)},
            remove=(TAG_SLOT, TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT),
        )
    store_together(
        dep,
        {by_key[k]: value for k, value in writes.items()},
        what="user, private key and passphrase" if key is not None else "user and password",
        tags=tags,
    )
    stored = {k: by_key[k] for k in writes}
    if key is None:
        return StoredCredentials(req.user, stored)
    return StoredCredentials(req.user, stored, keys.fingerprint(key), _register_sql(req.user, 1, key))


def status(dep: Deployment) -> CredentialsStatus:
    """Per parameter: set, placeholder or missing, and when it changed; never a value."""
    settings = dep.settings()
    by_key = {**settings.secret_parameter_names(), **settings.setting_parameter_names()}
    found = dep.get_parameters(by_key.values())
    rows = []
    incomplete = False
    for k, name in by_key.items():
        p = found[name]
        state = "missing" if p is None else ("placeholder" if is_placeholder(p.value) else "set")
        incomplete |= state != "set" and not (k in _OPTIONAL_KEYS and state == "placeholder")
        modified = p.last_modified.isoformat(timespec="seconds") if p and p.last_modified else ""
        rows.append(ParameterState(k, name, state, modified))
    key_facts: dict[str, str] = {}
    if settings.auth == "keypair" and found[by_key["private_key"]] is not None:
        key, broken = current_key(dep, settings)
        tags = dep.tags(by_key["private_key"])
        if key is not None:
            key_facts["fingerprint"] = keys.fingerprint(key)
            slot = tags.get(TAG_SLOT)
            key_facts["slot"] = sql.slot_column(int(slot)) if slot in ("1", "2") else "unknown"
        elif broken:
            key_facts["key_error"] = broken
            incomplete = True
        retired = tags.get(TAG_RETIRED_SLOT)
        if retired in ("1", "2"):
            key_facts["rotation_pending"] = sql.slot_column(int(retired))
    return CredentialsStatus(
        auth=settings.auth,
        region=dep.region,
        env_name=dep.env_name,
        parameters=tuple(rows),
        complete=not incomplete,
        **key_facts,
    )
