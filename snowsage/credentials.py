"""Snowflake settings and credentials from SSM Parameter Store, turned into connector arguments.

One ``fetch`` call reads every parameter a deployment's ``RuntimeSettings`` names (plain settings and,
for keypair/password auth, the SecureString secrets); ``load_connection`` validates the values and
returns a ``ConnectionConfig`` whose ``repr`` never shows a secret. Errors name the parameter, the
value seen (never a secret's) and the command that fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from snowsage import aws, keys
from snowsage.settings import PLACEHOLDER, RuntimeSettings, is_placeholder

log = logging.getLogger(__name__)

# name list in, {name: decrypted value} out; names that do not exist are simply absent.
Fetcher = Callable[[Sequence[str]], Mapping[str, str]]

# Commands the operator CLI offers; kept here so every message names the same fix.
FIX_KEYPAIR = (
    "run `snowsage keypair generate` (stores a new key and prints the ALTER USER <user> SET "
    "RSA_PUBLIC_KEY='...' statement to run in Snowflake)"
)
FIX_CREDENTIALS = "`snowsage credentials set`"
FIX_USER = "`snowsage credentials set --user NAME`"

SNOWFLAKE_DOMAIN = "snowflakecomputing"
LEGACY_SIGNIN_WARNING = (
    "password sign-in is legacy: Snowflake blocks it for TYPE=SERVICE users; switch to auth=keypair "
    "(`snowsage keypair generate`)"
)


class CredentialsError(Exception):
    """A deployment's Snowflake settings or credentials cannot be used; the message says how to fix it."""


class CredentialsNotSet(CredentialsError):
    """Secrets still hold the placeholder the stack wrote: the operator has not stored them yet."""

    def __init__(self, message: str, *, keys: Sequence[str], endpoint: Endpoint | None = None) -> None:
        super().__init__(message)
        self.keys = tuple(keys)
        # The non-secret part was readable, so network checks can still run.
        self.endpoint = endpoint


class ParameterMissing(CredentialsError):
    """An SSM parameter the settings name does not exist (stack not deployed, or another region)."""

    def __init__(self, message: str, *, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = tuple(names)


class InvalidSetting(CredentialsError):
    """A plain setting (account, host, port, protocol) holds a value Snowflake cannot use."""


class InvalidCredential(CredentialsError):
    """A stored secret exists but is unusable (e.g. a private key that does not parse)."""


class _Secret:
    """Holds a secret value; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a cache or a queue by accident
        raise TypeError("secrets cannot be pickled")


@dataclass(frozen=True)
class Endpoint:
    """Where the connector will connect: host, port and protocol (PrivateLink or sandbox overrides)."""

    host: str
    port: int
    protocol: str

    @property
    def is_snowflake_host(self) -> bool:
        return f".{SNOWFLAKE_DOMAIN}." in f".{self.host.lower()}"

    @property
    def is_privatelink(self) -> bool:
        return ".privatelink." in f".{self.host.lower()}"

    @property
    def ocsp_host(self) -> str | None:
        """The OCSP cache server the connector contacts on port 80; None when it makes no OCSP calls."""
        if self.protocol != "https" or not self.is_snowflake_host:
            return None
        if self.is_privatelink:
            return f"ocsp.{self.host.lower()}"
        tld = self.host.lower().rsplit(".", 1)[-1]
        return f"ocsp.{SNOWFLAKE_DOMAIN}.{tld}"


@dataclass(frozen=True, repr=False)
class ConnectionConfig:
    env_name: str
    auth: str
    account: str
    endpoint: Endpoint
    user: str | None
    role: str | None
    warehouse: str | None
    database: str | None
    schema: str | None
    # parameter name per logical key, so messages can name where a value lives
    parameters: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    _private_key: _Secret | None = None
    _password: _Secret | None = None

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def public_key_fingerprint(self) -> str | None:
        """``SHA256:...`` of the public half, as ``DESC USER`` shows RSA_PUBLIC_KEY_FP (not secret)."""
        if self._private_key is None:
            return None
        return keys.fingerprint(self._private_key.get())

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect`` (connector 4.x)."""
        kwargs: dict[str, Any] = {
            "account": self.account,
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "protocol": self.endpoint.protocol,
            "application": "snowsage",
        }
        for name in ("user", "role", "warehouse", "database", "schema"):
            value = getattr(self, name)
            if value:
                kwargs[name] = value
        if self.auth == "keypair":
            assert self._private_key is not None
            # Unencrypted PKCS#8 DER: the form connector 4.x accepts as ``private_key`` bytes.
            kwargs["private_key"] = keys.private_key_der(self._private_key.get())
        elif self.auth == "password":
            assert self._password is not None
            kwargs["password"] = self._password.get()
        elif self.auth == "wif":
            kwargs["authenticator"] = "WORKLOAD_IDENTITY"
            kwargs["workload_identity_provider"] = "AWS"
        return kwargs

    def describe(self) -> dict[str, Any]:
        """Non-secret summary for logs and reports."""
        return {
            "env": self.env_name,
            "auth": self.auth,
            "account": self.account,
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "protocol": self.endpoint.protocol,
            "user": self.user,
            "role": self.role,
            "warehouse": self.warehouse,
            "database": self.database,
            "schema": self.schema,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        secret = (
            "private_key=<redacted>" if self._private_key else "password=<redacted>" if self._password else ""
        )
        return f"ConnectionConfig({fields}{', ' + secret if secret else ''})"

    __str__ = __repr__


def boto3_fetcher(ssm_client: Any) -> Fetcher:
    """A Fetcher over an SSM client: GetParameters WithDecryption, 10 names per call."""

    def fetch(names: Sequence[str]) -> dict[str, str]:
        return {name: p["Value"] for name, p in aws.get_parameters(ssm_client, names).items()}

    return fetch


def default_host(account: str) -> str:
    """The host the connector derives from an account identifier (``<account>.snowflakecomputing.com``)."""
    parts = account.split(".")
    tld = "cn" if len(parts) > 1 and parts[1].lower().startswith("cn-") else "com"
    return f"{account}.{SNOWFLAKE_DOMAIN}.{tld}"


def _clean(value: str | None) -> str | None:
    return None if is_placeholder(value) else value.strip()  # type: ignore[union-attr]


def _endpoint(settings: RuntimeSettings, values: Mapping[str, str]) -> tuple[str, Endpoint]:
    names = settings.parameters
    raw_account = values.get(names["account"])
    account = _clean(raw_account)
    if not account:
        raise InvalidSetting(
            f"parameter {names['account']} holds {raw_account!r} instead of a Snowflake account "
            "identifier; set the account in the stack configuration and redeploy"
        )
    if "://" in account or account.lower().endswith(f".{SNOWFLAKE_DOMAIN}.com") or "/" in account:
        raise InvalidSetting(
            f"parameter {names['account']} holds {account!r}, a URL rather than an account identifier; "
            "use the orgname-accountname form (Snowsight: Admin > Accounts) and redeploy"
        )

    host = _clean(values.get(names["host"])) if "host" in names else None
    protocol = (_clean(values.get(names["protocol"])) if "protocol" in names else None) or "https"
    protocol = protocol.lower()
    if protocol not in ("https", "http"):
        raise InvalidSetting(
            f"parameter {names['protocol']} holds {protocol!r}; use https (http only for the local sandbox)"
        )
    raw_port = _clean(values.get(names["port"])) if "port" in names else None
    port = 443
    if raw_port:
        try:
            port = int(raw_port)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise InvalidSetting(f"parameter {names['port']} holds {raw_port!r}; use a TCP port such as 443")
    return account, Endpoint(host=host or default_host(account), port=port, protocol=protocol)


def load_connection(settings: RuntimeSettings, fetch: Fetcher) -> ConnectionConfig:
    """Read settings and secrets with one ``fetch`` call and validate them into a ConnectionConfig."""
    names = dict(settings.setting_parameter_names())
    secret_names = settings.secret_parameter_names()
    wanted = [*names.values(), *secret_names.values()]
    values = fetch(wanted)

    required = [settings.parameters[k] for k in ("account", "role", "warehouse", "database", "schema")]
    # The passphrase parameter is optional: absent means "no passphrase", like the placeholder.
    required += [n for k, n in secret_names.items() if k != "private_key_passphrase"]
    missing = [n for n in required if n not in values]
    if missing:
        raise ParameterMissing(
            f"SSM parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'do' if len(missing) > 1 else 'does'} not exist in {settings.region}; redeploy the "
            f"stacks for env {settings.env_name!r} or check that this runs in the region they were "
            "deployed to",
            names=missing,
        )

    account, endpoint = _endpoint(settings, values)

    def setting(key: str) -> str | None:
        return _clean(values.get(settings.parameters[key]))

    secrets = {k: values.get(n) for k, n in secret_names.items()}
    unset = [k for k, v in secrets.items() if k != "private_key_passphrase" and is_placeholder(v)]
    if unset:
        raise CredentialsNotSet(_not_set_message(settings, unset), keys=unset, endpoint=endpoint)

    common: dict[str, Any] = {
        "env_name": settings.env_name,
        "auth": settings.auth,
        "account": account,
        "endpoint": endpoint,
        "role": setting("role"),
        "warehouse": setting("warehouse"),
        "database": setting("database"),
        "schema": setting("schema"),
        "parameters": dict(settings.parameters),
    }
    if settings.auth == "keypair":
        pem = str(secrets["private_key"]).strip()
        if "\\n" in pem and "\n" not in pem:  # stored with escaped newlines (e.g. from a JSON string)
            pem = pem.replace("\\n", "\n")
        passphrase = secrets.get("private_key_passphrase")
        passphrase = None if is_placeholder(passphrase) else passphrase
        try:
            key = keys.load_private_key(pem, passphrase)
        except keys.PrivateKeyError as exc:
            raise InvalidCredential(
                f"private key in {secret_names['private_key']} is unusable: {exc}"
            ) from None
        return ConnectionConfig(**common, user=str(secrets["user"]).strip(), _private_key=_Secret(key))
    if settings.auth == "password":
        log.warning(LEGACY_SIGNIN_WARNING)
        return ConnectionConfig(
            **common,
            user=str(secrets["user"]).strip(),
            warnings=(LEGACY_SIGNIN_WARNING,),
            _password=_Secret(secrets["password"]),
        )
    # wif: no secret at all; Snowflake maps the function's IAM role to the configured user.
    return ConnectionConfig(**common, user=settings.user or None)


def _not_set_message(settings: RuntimeSettings, unset: Iterable[str]) -> str:
    unset = list(unset)
    listed = ", ".join(f"{k} ({settings.parameters[k]})" for k in unset)
    if settings.auth == "keypair":
        fixes = []
        if "private_key" in unset:
            fixes.append(FIX_KEYPAIR)
        if "user" in unset:
            fixes.append(f"set the user with {FIX_USER}")
        fix = " and ".join(fixes)
    else:
        fix = (
            f"store them with {FIX_CREDENTIALS} (or switch to auth=keypair with `snowsage keypair generate`)"
        )
    return (
        f"Snowflake credentials for env {settings.env_name!r} are not set yet ({listed} still "
        f"{'holds' if len(unset) == 1 else 'hold'} the placeholder {PLACEHOLDER!r}): {fix}"
    )


def connect(settings: RuntimeSettings, fetch: Fetcher, **overrides: Any) -> Any:
    """Open a ``snowflake.connector`` connection for these settings; ``overrides`` win."""
    import snowflake.connector  # heavy import, only when connecting

    cfg = load_connection(settings, fetch)
    return snowflake.connector.connect(**{**cfg.connect_kwargs(), **overrides})
