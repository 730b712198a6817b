"""Connectivity check: settings → DNS → TCP → TLS → OCSP → login → query → warehouse, each bounded.

``run_check`` returns a ``snowsage.reports.CheckReport``. Every step has its own timeout and the whole check has a
budget, so it finishes well inside a 60 s Lambda timeout even when a listener accepts connections and
never answers. It stops at the first failing hard step; later steps are still listed, with
``skipped: true`` and ``ok: null``. ``diagnosis`` is one sentence naming the cause and the fix.
OCSP is soft: the connector fails open, so a blocked OCSP host only adds a warning.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from snowsage.credentials import (
    FIX_CREDENTIALS,
    FIX_KEYPAIR,
    ConnectionConfig,
    CredentialsError,
    CredentialsNotSet,
    Endpoint,
    Fetcher,
    InvalidCredential,
    InvalidSetting,
    ParameterMissing,
    load_connection,
)
from snowsage.reports import STEPS, CheckReport, SnowflakeInfo, Status, Step
from snowsage.settings import RuntimeSettings

T = TypeVar("T")


IDENTITY_QUERY = (
    "select current_version(), current_account(), current_region(), current_role(), current_date()"
)
# Constant SELECTs are answered without a warehouse; GENERATOR has to run on one.
WAREHOUSE_QUERY = "select count(*) from table(generator(rowcount => 1))"

NETWORK_POLICY_FIX = (
    "add the NAT gateway's Elastic IP addresses to the Snowflake network policy (`snowsage network-policy` "
    "prints the statement)"
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds per step; ``total`` caps the sum so the check always ends inside the Lambda timeout."""

    settings: float = 8.0
    dns: float = 3.0
    tcp: float = 3.0
    tls: float = 4.0
    ocsp: float = 2.0
    login: float = 15.0
    query: float = 8.0
    warehouse: float = 10.0
    total: float = 40.0


class StepTimeout(Exception):
    pass


class _StepFailed(Exception):
    """A hard step failed; ``detail`` goes in the step, ``diagnosis`` in the report."""

    def __init__(self, detail: str, diagnosis: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.diagnosis = diagnosis


def _bounded(fn: Callable[[], T], timeout: float, on_late: Callable[[T], None] | None = None) -> T:
    """Run ``fn`` in a daemon thread and give up after ``timeout`` seconds.

    Blocking calls (getaddrinfo, the connector's login) have no reliable timeout of their own; a
    daemon thread left behind cannot keep the process alive, and ``on_late`` cleans up a result
    that arrives after we gave up (e.g. closes a connection).
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    gave_up = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            box["error"] = exc
        done.set()
        if gave_up.is_set() and "value" in box and on_late is not None:
            with contextlib.suppress(Exception):  # best-effort cleanup of an abandoned result
                on_late(box["value"])

    threading.Thread(target=target, name="snowsage-check-step", daemon=True).start()
    if not done.wait(max(timeout, 0.01)):
        gave_up.set()
        if done.is_set() and "value" in box and on_late is not None:
            on_late(box["value"])
        raise StepTimeout(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- error explanations


def error_code(exc: BaseException) -> int | None:
    """The Snowflake connector's numeric error code (``errno``), if the error has one."""
    errno = getattr(exc, "errno", None)
    try:
        return int(errno) if errno is not None else None
    except (TypeError, ValueError):
        return None


def _first_line(message: str) -> str:
    text = re.sub(r"\s+", " ", message).strip()
    text = re.sub(r"\s*\[[0-9a-f-]{36}\]", "", text)  # request ids add noise, not meaning
    return text[:300]


JWT_CODES = frozenset({390144, 394300, 394301, 394302, 394303, 394304, 394305, 394306})
JWT_CLOCK_CODES = frozenset({394301, 394302, 394303})


@dataclass(frozen=True)
class SnowflakeErrorSeen:
    """A Snowflake error and the connection it happened on, as the rules read it."""

    code: int | None
    message: str
    cfg: ConnectionConfig | None = None
    step: str = "login"

    @property
    def msg(self) -> str:
        return self.message.lower()

    def has(self, *fragments: str) -> bool:
        return any(f in self.msg for f in fragments)

    def setting(self, name: str) -> str:
        """A connection setting for the fix to name, or a <placeholder> the user fills in."""
        return str((getattr(self.cfg, name) if self.cfg else None) or f"<{name}>")

    user = property(lambda self: self.setting("user"))
    role = property(lambda self: self.setting("role"))
    warehouse = property(lambda self: self.setting("warehouse"))
    database = property(lambda self: self.setting("database"))
    schema = property(lambda self: self.setting("schema"))

    @property
    def auth(self) -> str | None:
        return self.cfg.auth if self.cfg else None

    @property
    def jwt(self) -> bool:
        return self.code in JWT_CODES or self.has("jwt token")

    @property
    def not_authorized(self) -> bool:
        """Login named an object (warehouse, schema, database) that is missing or not granted."""
        return self.code == 390201 or (
            "requested" in self.msg and self.has("does not exist or not authorized")
        )


def _seen_ip(e: SnowflakeErrorSeen) -> str:
    ip = re.search(r"ip(?:/token)? ([0-9a-f.:]+)", e.msg)
    return f" (Snowflake saw {ip.group(1)})" if ip else ""


def _stored_key(e: SnowflakeErrorSeen) -> str:
    fp = e.cfg.public_key_fingerprint if e.cfg else None
    return f" (stored key fingerprint {fp})" if fp else ""


@dataclass(frozen=True)
class ErrorRule:
    """When ``matches``, the diagnosis is "<cause>: <fix>."."""

    name: str
    matches: Callable[[SnowflakeErrorSeen], bool]
    cause: Callable[[SnowflakeErrorSeen], str]
    fix: Callable[[SnowflakeErrorSeen], str]

    def explain(self, e: SnowflakeErrorSeen) -> str:
        return f"{self.cause(e)}: {self.fix(e)}."


# First match wins, so a narrower rule comes before a broader one that would also match its
# errors (an expired JWT before any JWT, a missing warehouse before any missing object). Message
# text is tried with the numeric code because it is stable across drivers.
ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "network_policy",
        lambda e: e.has("not allowed to access snowflake") or e.code == 390422,
        lambda e: f"Snowflake's network policy rejected this connection's source address{_seen_ip(e)}",
        lambda e: NETWORK_POLICY_FIX,
    ),
    ErrorRule(
        "jwt_clock",
        lambda e: e.jwt and (e.code in JWT_CLOCK_CODES or e.has("expired", "not yet valid")),
        lambda e: f"Snowflake rejected the key-pair login token for {e.user} as expired or not yet valid",
        lambda e: "the clock of this machine is off; sync it (NTP) and retry",
    ),
    ErrorRule(
        "jwt_key",
        lambda e: e.jwt,
        lambda e: f"Snowflake rejected the key-pair login for user {e.user}",
        lambda e: (
            f"the public key registered with ALTER USER {e.user} SET RSA_PUBLIC_KEY does not match the "
            f"stored private key{_stored_key(e)}, or the user does not exist; {FIX_KEYPAIR}"
        ),
    ),
    ErrorRule(
        "user_locked",
        lambda e: e.has("temporarily locked"),
        lambda e: f"Snowflake user {e.user} is temporarily locked after failed sign-ins",
        lambda e: (
            f"wait 15 minutes or run ALTER USER {e.user} SET MINS_TO_UNLOCK = 0, then fix the "
            "credentials that failed"
        ),
    ),
    ErrorRule(
        "user_disabled",
        lambda e: e.has("user access disabled") or ("disabled" in e.msg and "user" in e.msg),
        lambda e: f"Snowflake user {e.user} is disabled",
        lambda e: f"a user admin must run ALTER USER {e.user} SET DISABLED=FALSE",
    ),
    ErrorRule(
        "wrong_password",
        lambda e: (e.code == 390100 or e.has("incorrect username or password")) and e.auth == "password",
        lambda e: f"Snowflake rejected the password for user {e.user}",
        lambda e: (
            f"store the right user and password with {FIX_CREDENTIALS}; Snowflake blocks password "
            "sign-in for TYPE=SERVICE users, so for a service user switch to auth=keypair "
            "(`snowsage keypair generate`)"
        ),
    ),
    ErrorRule(
        "wrong_user",
        lambda e: e.code == 390100 or e.has("incorrect username or password"),
        lambda e: f"Snowflake rejected the sign-in for user {e.user}",
        lambda e: f"check the user name with {FIX_CREDENTIALS}",
    ),
    ErrorRule(
        "role_not_granted",
        lambda e: e.code == 390189 or ("role" in e.msg and "connect string" in e.msg),
        lambda e: f"Role {e.role} does not exist or is not granted to user {e.user}",
        lambda e: f"run GRANT ROLE {e.role} TO USER {e.user} (or fix the role setting and redeploy)",
    ),
    ErrorRule(
        "warehouse_not_authorized",
        lambda e: e.not_authorized and "warehouse" in e.msg,
        lambda e: f"Warehouse {e.warehouse} does not exist or role {e.role} may not use it",
        lambda e: (
            f"run GRANT USAGE ON WAREHOUSE {e.warehouse} TO ROLE {e.role} (or fix the warehouse "
            "setting and redeploy)"
        ),
    ),
    ErrorRule(
        "schema_not_authorized",
        lambda e: e.not_authorized and "schema" in e.msg,
        lambda e: f"Schema {e.database}.{e.schema} does not exist or role {e.role} may not use it",
        lambda e: f"run GRANT USAGE ON SCHEMA {e.database}.{e.schema} TO ROLE {e.role}",
    ),
    ErrorRule(
        "database_not_authorized",
        lambda e: e.not_authorized,
        lambda e: f"Database {e.database} does not exist or role {e.role} may not use it",
        lambda e: (
            f"run GRANT USAGE ON DATABASE {e.database} TO ROLE {e.role} (or fix the database setting "
            "and redeploy)"
        ),
    ),
    ErrorRule(
        "no_active_warehouse",
        lambda e: e.code == 606 or e.has("no active warehouse"),
        lambda e: "No usable warehouse in the session",
        lambda e: (
            f"warehouse {e.warehouse} does not exist, is suspended without auto-resume, or role "
            f"{e.role} lacks USAGE on it; run GRANT USAGE ON WAREHOUSE {e.warehouse} TO ROLE {e.role} "
            f"and ALTER WAREHOUSE {e.warehouse} SET AUTO_RESUME = TRUE"
        ),
    ),
    ErrorRule(
        "object_missing",
        lambda e: e.code == 2003 or e.has("does not exist"),
        lambda e: (
            f"The {e.step} query failed because an object does not exist or role {e.role} may not "
            f"see it ({_first_line(e.message)})"
        ),
        lambda e: f"grant role {e.role} access to it",
    ),
    ErrorRule(
        "unknown_account",
        lambda e: e.has("404") or ("403" in e.msg and "forbidden" in e.msg),
        lambda e: f"Snowflake does not know account {e.cfg.account if e.cfg else '<account>'!r}",
        lambda e: (
            "set the account identifier in orgname-accountname form (Snowsight: Admin > Accounts) "
            "and redeploy"
        ),
    ),
    ErrorRule(
        "no_answer",
        lambda e: e.code == 250001 or e.has("could not connect to snowflake backend"),
        lambda e: f"The connector got no answer from {e.cfg.host if e.cfg else 'Snowflake'} during {e.step}",
        lambda e: (
            "the network path drops traffic after connecting (proxy, firewall or a listener that is "
            "not Snowflake); check the route and security group for TCP 443"
        ),
    ),
    ErrorRule(
        "workload_identity",
        lambda e: e.auth == "wif" and e.has("workload", "attestation", "identity"),
        lambda e: f"Workload identity sign-in failed ({_first_line(e.message)})",
        lambda e: (
            "create the Snowflake user with TYPE=SERVICE and WORKLOAD_IDENTITY = (TYPE = AWS ARN = "
            "'<this function's role ARN>')"
        ),
    ),
)


def matching_rule(e: SnowflakeErrorSeen) -> ErrorRule | None:
    return next((rule for rule in ERROR_RULES if rule.matches(e)), None)


def explain_snowflake_error(
    code: int | None, message: str, cfg: ConnectionConfig | None = None, *, step: str = "login"
) -> str:
    """One sentence naming the cause and the fix for a Snowflake error a user can meet."""
    seen = SnowflakeErrorSeen(code, message, cfg, step)
    rule = matching_rule(seen)
    if rule is not None:
        return rule.explain(seen)
    return f"Snowflake error {code if code is not None else ''} during {step}: {_first_line(message)}."


# --------------------------------------------------------------------------------------- the check


@dataclass
class _Run:
    settings: RuntimeSettings | None
    timeouts: Timeouts
    started: float
    steps: list[Step]
    warnings: list[str]

    def remaining(self) -> float:
        return self.timeouts.total - (time.monotonic() - self.started)

    def budget(self, step: str) -> float:
        return max(0.5, min(getattr(self.timeouts, step), self.remaining()))

    def record(self, name: str, ok: bool | None, ms: int, detail: str, *, skipped: bool = False) -> None:
        self.steps.append(Step(name, ok, ms, detail, skipped))

    def skip(self, name: str, why: str) -> None:
        self.record(name, None, 0, why, skipped=True)


def _ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)


def _report(
    run: _Run,
    status: Status,
    diagnosis: str | None,
    cfg: ConnectionConfig | None,
    snowflake_info: SnowflakeInfo | None,
    endpoint: Endpoint | None = None,
) -> CheckReport:
    done = {s.name for s in run.steps}
    failed = [s.name for s in run.steps if s.hard_failure]
    if status == "not_configured":
        reason = "not run: credentials are not set"
    else:
        reason = f"not run: the {failed[-1]} step failed" if failed else "not run"
    for name in STEPS:
        if name not in done:
            run.skip(name, reason)
    order = {n: i for i, n in enumerate(STEPS)}
    ep = cfg.endpoint if cfg else endpoint
    settings = run.settings
    return CheckReport(
        status=status,
        env=settings.env_name if settings else None,
        auth=settings.auth if settings else None,
        host=ep.host if ep else None,
        ms=round((time.monotonic() - run.started) * 1000),
        steps=tuple(sorted(run.steps, key=lambda s: order[s.name])),
        snowflake=snowflake_info or SnowflakeInfo(),
        diagnosis=diagnosis,
        warnings=tuple(run.warnings),
    )


def settings_error_report(message: str, *, timeouts: Timeouts | None = None) -> CheckReport:
    """The report for a check that could not even parse its RuntimeSettings (a deployment defect)."""
    run = _Run(None, timeouts or Timeouts(), time.monotonic(), [], [])
    run.record("settings", False, 0, message)
    return _report(run, "failed", f"The check's runtime settings are unusable ({message}).", None, None)


def run_check(settings: RuntimeSettings, fetch: Fetcher, *, timeouts: Timeouts | None = None) -> CheckReport:
    """Run every step in order and return the report (see module docstring)."""
    run = _Run(settings, timeouts or Timeouts(), time.monotonic(), [], [])

    # settings ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    cfg: ConnectionConfig | None = None
    not_set: CredentialsNotSet | None = None
    try:
        cfg = _bounded(lambda: load_connection(settings, fetch), run.budget("settings"))
    except CredentialsNotSet as exc:
        not_set = exc
        run.record("settings", False, _ms(t0), f"credentials not set: {', '.join(exc.keys)}")
    except (ParameterMissing, InvalidSetting, InvalidCredential) as exc:
        run.record("settings", False, _ms(t0), str(exc))
        return _report(run, "failed", f"{exc}.", None, None)
    except StepTimeout as exc:
        msg = (
            f"Reading the SSM parameters got {exc}: the function needs a route to the SSM and KMS "
            "endpoints (NAT gateway or VPC interface endpoints for ssm and kms)."
        )
        run.record("settings", False, _ms(t0), f"reading SSM parameters: {exc}")
        return _report(run, "failed", msg, None, None)
    except CredentialsError as exc:
        run.record("settings", False, _ms(t0), str(exc))
        return _report(run, "failed", f"{exc}.", None, None)
    except Exception as exc:  # noqa: BLE001 - AWS errors (AccessDenied, throttling) become a diagnosis
        from snowsage.aws import error_code as aws_error_code  # botocore: present wherever an AWS
        from snowsage.aws import is_throttling  # call just failed, so imported only then

        what = aws_error_code(exc) or type(exc).__name__
        run.record("settings", False, _ms(t0), f"reading SSM parameters failed: {what}")
        failed = f"Reading the SSM parameters under /snowsage/{settings.env_name}/snowflake/ failed ({what})"
        if is_throttling(exc):
            msg = (
                f"{failed}: SSM throttled the account's requests even after retries. Nothing is "
                "misconfigured: run the check again in a minute, and if it recurs, spread out what "
                "reads these parameters at the same time (notebook kernels, jobs, a tighter check schedule)."
            )
        else:
            msg = (
                f"{failed}: grant the function ssm:GetParameters on them and kms:Decrypt on their KMS "
                "key (redeploy the stacks)."
            )
        return _report(run, "failed", msg, None, None)
    else:
        run.record(
            "settings",
            True,
            _ms(t0),
            f"auth={cfg.auth} account={cfg.account} user={cfg.user or '-'} role={cfg.role or '-'} "
            f"warehouse={cfg.warehouse or '-'}",
        )
        run.warnings.extend(cfg.warnings)

    endpoint = cfg.endpoint if cfg else (not_set.endpoint if not_set else None)
    if endpoint is None:  # pragma: no cover - CredentialsNotSet always carries the endpoint
        return _report(run, "not_configured", f"{not_set}.", None, None)

    # network ----------------------------------------------------------------------------------
    failure = _network_steps(run, endpoint)
    if failure:
        if not_set:
            run.warnings.append(str(not_set))
        return _report(run, "failed", failure, cfg, None, endpoint)
    if not_set or cfg is None:
        return _report(run, "not_configured", f"{not_set}.", None, None, endpoint)

    # login, query, warehouse ------------------------------------------------------------------
    snowflake_info: SnowflakeInfo | None = None
    try:
        conn = _login(run, cfg)
    except _StepFailed as exc:
        return _report(run, "failed", exc.diagnosis, cfg, None)
    try:
        snowflake_info = _query(run, cfg, conn)
        _warehouse(run, cfg, conn)
    except _StepFailed as exc:
        return _report(run, "failed", exc.diagnosis, cfg, snowflake_info)
    finally:
        with contextlib.suppress(Exception):  # best effort: the check already has its answer
            _bounded(conn.close, 2.0)
    return _report(run, "ok", None, cfg, snowflake_info)


def _network_steps(run: _Run, ep: Endpoint) -> str | None:
    """dns, tcp, tls, ocsp; returns the diagnosis of the first hard failure."""
    # dns
    t0 = time.perf_counter()
    try:
        infos = _bounded(
            lambda: socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM), run.budget("dns")
        )
        addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
    except (OSError, StepTimeout) as exc:
        run.record("dns", False, _ms(t0), f"{ep.host} does not resolve: {exc}")
        if ep.is_privatelink:
            return (
                f"The PrivateLink host {ep.host} does not resolve: create a Route 53 private hosted zone "
                "for privatelink.snowflakecomputing.com associated with this VPC, with CNAME records for "
                "the URLs SYSTEM$GET_PRIVATELINK_CONFIG() returns."
            )
        return (
            f"{ep.host} does not resolve ({exc}): check the account identifier (orgname-accountname) "
            "or host setting, and that the VPC has DNS resolution enabled."
        )
    run.record("dns", True, _ms(t0), f"{ep.host} -> {', '.join(addrs[:4])}")

    # tcp
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((addrs[0], ep.port), timeout=run.budget("tcp"))
    except TimeoutError:
        run.record(
            "tcp", False, _ms(t0), f"no answer from {addrs[0]}:{ep.port} within {run.budget('tcp'):g} s"
        )
        if ep.is_privatelink:
            return (
                f"No TCP answer from {ep.host}:{ep.port}: the security group of the Snowflake VPC "
                f"endpoint must allow inbound TCP {ep.port} from this subnet, and this security group "
                f"outbound TCP {ep.port}."
            )
        return (
            f"No TCP answer from {ep.host}:{ep.port}: give the subnet a route to a NAT gateway and let "
            f"the security group allow outbound TCP {ep.port}."
        )
    except OSError as exc:
        run.record("tcp", False, _ms(t0), f"{addrs[0]}:{ep.port}: {exc.strerror or exc}")
        return (
            f"Connecting to {ep.host}:{ep.port} failed ({exc.strerror or exc}): nothing accepts "
            f"connections there; check the host and port settings (for the sandbox, start fakesnow on "
            f"that port)."
        )
    run.record("tcp", True, _ms(t0), f"connected to {addrs[0]}:{ep.port}")

    # tls
    if ep.protocol != "https":
        sock.close()
        run.record("tls", None, 0, f"protocol is {ep.protocol} (local sandbox): no TLS", skipped=True)
    else:
        t0 = time.perf_counter()
        try:
            detail = _tls(sock, ep.host, run.budget("tls"))
        except ssl.SSLCertVerificationError as exc:
            run.record("tls", False, _ms(t0), f"certificate not trusted: {exc.verify_message}")
            return (
                f"The TLS certificate presented for {ep.host} is not trusted ({exc.verify_message}): a "
                "proxy or firewall inspects TLS; exempt *.snowflakecomputing.com from TLS inspection."
            )
        except TimeoutError:
            run.record("tls", False, _ms(t0), f"TLS handshake got no answer within {run.budget('tls'):g} s")
            return (
                f"{ep.host}:{ep.port} accepts TCP but never completes a TLS handshake: a firewall or "
                "proxy holds the connection; allow outbound HTTPS to Snowflake without interception."
            )
        except (ssl.SSLError, OSError) as exc:
            run.record("tls", False, _ms(t0), f"TLS handshake failed: {exc}")
            return (
                f"The TLS handshake with {ep.host}:{ep.port} failed ({exc}): a proxy or firewall "
                "interferes with TLS; allow outbound HTTPS to Snowflake without interception."
            )
        finally:
            sock.close()
        run.record("tls", True, _ms(t0), detail)

    # ocsp (soft)
    ocsp_host = ep.ocsp_host
    if ocsp_host is None:
        run.record("ocsp", None, 0, "no OCSP check for this host/protocol", skipped=True)
    else:
        t0 = time.perf_counter()
        try:
            budget = run.budget("ocsp")
            with socket.create_connection((ocsp_host, 80), timeout=budget):
                pass
            run.record("ocsp", True, _ms(t0), f"{ocsp_host}:80 reachable")
        except OSError as exc:
            run.record("ocsp", False, _ms(t0), f"{ocsp_host}:80 unreachable: {exc}")
            run.warnings.append(
                f"the OCSP host {ocsp_host} is not reachable on TCP 80 (the connector fails open, "
                "so logins still work but certificate revocation is not checked): allow outbound TCP 80 "
                "in the security group"
            )
    return None


def _tls(sock: socket.socket, host: str, timeout: float) -> str:
    try:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi ships with the connector
        context = ssl.create_default_context()
    sock.settimeout(timeout)
    with context.wrap_socket(sock, server_hostname=host) as tls:
        cert = tls.getpeercert() or {}
        not_after = cert.get("notAfter", "?")
        return f"{tls.version()} certificate valid until {not_after}"


def _connect_kwargs(cfg: ConnectionConfig, timeout: float) -> dict[str, Any]:
    seconds = max(1, math.floor(timeout))
    return {
        **cfg.connect_kwargs(),
        "login_timeout": seconds,
        "network_timeout": seconds,
        "socket_timeout": seconds,
        # Ask Snowflake to reject a missing role/warehouse/database at login, so the error names it.
        "validate_default_parameters": True,
        "client_session_keep_alive": False,
    }


def _login(run: _Run, cfg: ConnectionConfig) -> Any:
    import snowflake.connector

    budget = run.budget("login")
    kwargs = _connect_kwargs(cfg, budget)
    t0 = time.perf_counter()
    try:
        conn = _bounded(
            lambda: snowflake.connector.connect(**kwargs), budget + 2.0, on_late=lambda c: c.close()
        )
    except StepTimeout as exc:
        run.record("login", False, _ms(t0), f"login {exc}")
        raise _StepFailed(
            "timeout",
            f"Login to {cfg.host}:{cfg.endpoint.port} got no answer within {budget:g} s: the path accepts "
            "connections but nothing answers (a firewall, proxy or a listener that is not Snowflake).",
        ) from None
    except Exception as exc:  # noqa: BLE001 - every connector error becomes a diagnosis
        raise _connector_failed(run, cfg, "login", t0, exc) from None
    run.record("login", True, _ms(t0), f"signed in as {cfg.user or '(workload identity)'} ({cfg.auth})")
    return conn


def _execute(conn: Any, sql: str, timeout: float) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, timeout=max(1, math.floor(timeout)))
        return list(cur.fetchall())
    finally:
        cur.close()


def _connector_failed(run: _Run, cfg: ConnectionConfig, step: str, t0: float, exc: Exception) -> _StepFailed:
    code = error_code(exc)
    message = str(getattr(exc, "raw_msg", None) or getattr(exc, "msg", None) or exc)
    run.record(step, False, _ms(t0), f"{code or type(exc).__name__}: {_first_line(message)}")
    return _StepFailed(message, explain_snowflake_error(code, message, cfg, step=step))


Rows = list[tuple[Any, ...]]


def _query_step(
    run: _Run, cfg: ConnectionConfig, conn: Any, step: str, sql: str, detail: Callable[[Rows], str]
) -> Rows:
    budget = run.budget(step)
    t0 = time.perf_counter()
    try:
        rows = _bounded(lambda: _execute(conn, sql, budget), budget + 1.0)
    except StepTimeout as exc:
        run.record(step, False, _ms(t0), f"query {exc}")
        raise _StepFailed(
            "timeout",
            f"The {step} query got no answer within {budget:g} s: warehouse {cfg.warehouse} may be "
            "queued or resuming; check it in Snowsight and retry.",
        ) from None
    except Exception as exc:  # noqa: BLE001 - every connector error becomes a diagnosis
        raise _connector_failed(run, cfg, step, t0, exc) from None
    run.record(step, True, _ms(t0), detail(rows))
    return rows


def _query(run: _Run, cfg: ConnectionConfig, conn: Any) -> SnowflakeInfo:
    def detail(rows: Rows) -> str:
        version, account, region, role, _ = rows[0]
        return f"Snowflake {version}, account {account}, region {region}, role {role}"

    rows = _query_step(run, cfg, conn, "query", IDENTITY_QUERY, detail)
    version, account, region, role, date = rows[0]
    return SnowflakeInfo(version=str(version), account=account, region=region, role=role, date=str(date))


def _warehouse(run: _Run, cfg: ConnectionConfig, conn: Any) -> None:
    if not cfg.warehouse:
        run.record("warehouse", None, 0, "no warehouse configured", skipped=True)
        return
    _query_step(
        run, cfg, conn, "warehouse", WAREHOUSE_QUERY, lambda _: f"warehouse {cfg.warehouse} ran a query"
    )
