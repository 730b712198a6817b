"""Documents one program writes and another reads, defined once so both sides agree.

``CheckReport`` is what the connectivity check Lambda returns and ``snowsage check`` reads;
``InstallStatus`` is install-status.json, which the lifecycle script writes and the notebook helper
reads. ``to_dict`` gives the JSON both sides have always exchanged; ``from_dict`` rejects a
malformed document with a ``ReportError`` naming the field, and ignores keys it does not know,
because a newer writer (a redeployed Lambda or lifecycle) may add some before the reader is updated.

Standard library only: the Lambda bundle and the notebook kernel import this without pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast, get_args

STEPS = ("settings", "dns", "tcp", "tls", "ocsp", "login", "query", "warehouse")
# A soft step's failure is a warning: the connector fails open when OCSP is unreachable.
SOFT_STEPS = frozenset({"ocsp"})

Status = Literal["ok", "failed", "not_configured"]
STATUSES: tuple[str, ...] = get_args(Status)


class ReportError(ValueError):
    """A document that does not have the shape its reader needs."""


_REQUIRED: Any = object()
_NAMES = {str: "a string", bool: "true or false", int: "a number", float: "a number", list: "a list"}


def _field(doc: Mapping[str, Any], what: str, key: str, types: tuple[type, ...], default: Any) -> Any:
    if key not in doc and default is _REQUIRED:
        raise ReportError(f"{what}: {key!r} is missing")
    value = doc.get(key, default)
    # bool is an int to isinstance, but never a count of milliseconds.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        expected = " or ".join(
            dict.fromkeys(_NAMES.get(t, "null" if t is type(None) else t.__name__) for t in types)
        )
        raise ReportError(f"{what}: {key!r} must be {expected}, got {type(value).__name__} {value!r:.60}")
    return value


def _object(doc: object, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ReportError(f"{what} must be a JSON object, got {type(doc).__name__}")
    return cast(Mapping[str, Any], doc)


_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_NUMBER = (int, float, type(None))


class _Flat:
    """A dataclass whose JSON is its fields, in their order."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


@dataclass(frozen=True)
class Step(_Flat):
    """One step of the check: ``ok`` is None when the step was skipped or does not apply."""

    name: str
    ok: bool | None
    ms: int | float | None = 0
    detail: str = ""
    skipped: bool = False

    @property
    def hard_failure(self) -> bool:
        return self.ok is False and self.name not in SOFT_STEPS

    @classmethod
    def from_dict(cls, doc: object, what: str = "check report step") -> Step:
        d = _object(doc, what)
        return cls(
            name=_field(d, what, "name", _STR, _REQUIRED),
            ok=_field(d, what, "ok", (bool, type(None)), None),
            ms=_field(d, what, "ms", _OPT_NUMBER, None),
            detail=_field(d, what, "detail", _OPT_STR, "") or "",
            skipped=_field(d, what, "skipped", (bool,), False),
        )


@dataclass(frozen=True)
class SnowflakeInfo(_Flat):
    """What the identity query saw; every field is None until the query step succeeds."""

    version: str | None = None
    account: str | None = None
    region: str | None = None
    role: str | None = None
    date: str | None = None

    @classmethod
    def from_dict(cls, doc: object, what: str = "check report 'snowflake'") -> SnowflakeInfo:
        d = _object(doc, what)
        return cls(
            **{
                k: _field(d, what, k, _OPT_STR, None)
                for k in ("version", "account", "region", "role", "date")
            }
        )


@dataclass(frozen=True)
class CheckReport:
    """The connectivity check's answer: every step in ``STEPS`` order and, unless ok, a diagnosis."""

    status: Status
    steps: tuple[Step, ...]
    env: str | None = None
    auth: str | None = None
    host: str | None = None
    ms: int | float | None = 0
    snowflake: SnowflakeInfo = field(default_factory=SnowflakeInfo)
    diagnosis: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed_step(self) -> str | None:
        """The hard step that stopped the check (OCSP only warns), or None."""
        return next((s.name for s in self.steps if s.hard_failure), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "env": self.env,
            "auth": self.auth,
            "host": self.host,
            "ms": self.ms,
            "steps": [s.to_dict() for s in self.steps],
            "snowflake": self.snowflake.to_dict(),
            "diagnosis": self.diagnosis,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, doc: object) -> CheckReport:
        what = "check report"
        d = _object(doc, what)
        ok = _field(d, what, "ok", (bool,), _REQUIRED)
        # Reports from before "status" existed said only ok or not.
        status = _field(d, what, "status", _OPT_STR, None) or ("ok" if ok else "failed")
        if status not in STATUSES:
            raise ReportError(f"{what}: 'status' must be one of {', '.join(STATUSES)}, got {status!r:.60}")
        if (status == "ok") != ok:
            raise ReportError(f"{what}: 'ok' is {str(ok).lower()} but 'status' is {status!r}")
        steps = _field(d, what, "steps", (list,), _REQUIRED)
        warnings = _field(d, what, "warnings", (list,), [])
        if not all(isinstance(w, str) for w in warnings):
            raise ReportError(f"{what}: 'warnings' must be a list of strings")
        snowflake = d.get("snowflake")
        return cls(
            status=cast(Status, status),
            steps=tuple(Step.from_dict(s, f"{what} step {i + 1}") for i, s in enumerate(steps)),
            env=_field(d, what, "env", _OPT_STR, None),
            auth=_field(d, what, "auth", _OPT_STR, None),
            host=_field(d, what, "host", _OPT_STR, None),
            ms=_field(d, what, "ms", _OPT_NUMBER, None),
            snowflake=SnowflakeInfo() if snowflake is None else SnowflakeInfo.from_dict(snowflake),
            diagnosis=_field(d, what, "diagnosis", _OPT_STR, None),
            warnings=tuple(warnings),
        )


INSTALL_RUNNING = "running"
INSTALL_OK = "ok"
INSTALL_FAILED = "failed"


@dataclass(frozen=True)
class InstallStatus:
    """install-status.json: how far the lifecycle's background install of the connector got.

    ``state`` is running, ok or failed; every other field is "" until the lifecycle knows it.
    """

    state: str
    detail: str = ""
    started_at: str = ""
    updated_at: str = ""
    wheelhouse: str = ""
    wheelhouse_sha256: str = ""
    network_mode: str = ""
    source: str = ""
    python: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == INSTALL_RUNNING

    @property
    def failed(self) -> bool:
        return self.state == INSTALL_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "versions": dict(self.versions)}

    @classmethod
    def from_dict(cls, doc: object) -> InstallStatus:
        what = "install status"
        d = _object(doc, what)
        state = _field(d, what, "state", _STR, _REQUIRED)
        if not state:
            raise ReportError(f"{what}: 'state' must not be empty")
        versions = _field(d, what, "versions", (dict,), {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items()):
            raise ReportError(f"{what}: 'versions' must map package names to version strings")
        texts = {k: _field(d, what, k, _STR, "") for k in _INSTALL_TEXT_FIELDS}
        return cls(state=state, versions=dict(versions), **texts)


_INSTALL_TEXT_FIELDS = tuple(f for f in InstallStatus.__dataclass_fields__ if f not in ("state", "versions"))
