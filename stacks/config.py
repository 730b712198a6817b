"""The app's one configuration: cdk.json context parsed and validated into a frozen ``AppConfig``.

Every setting has a working default in cdk.json and can be overridden with ``-c key=value``.
Values given with ``-c`` arrive as strings, so every parser accepts the string form too. A bad
value raises ``ConfigError`` naming the key, the value seen and what is allowed; app.py turns it
into one line on stderr and exits before anything is synthesized.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

AL2_END_OF_SUPPORT = "2026-06-30"

INTERFACE_ENDPOINT_SERVICES = (
    "ssm",
    "kms",
    "logs",
    "monitoring",
    "sts",
    "sagemaker_api",
    "sagemaker_notebook",
    "lambda",
)
# What the notebook and the check function need to start, log and read their parameters with no
# internet at all; privatelink mode turns these on unless the user chooses otherwise.
PRIVATELINK_DEFAULT_ENDPOINTS = (
    "ssm",
    "kms",
    "logs",
    "monitoring",
    "sts",
    "sagemaker_api",
    "sagemaker_notebook",
)

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")
_ORG_ACCOUNT = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9_]+$")
_LEGACY_LOCATOR = re.compile(r"^[A-Za-z0-9]+\.[a-z0-9-]+(\.(aws|azure|gcp))?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_PLATFORM = re.compile(r"^notebook-al2023-v\d+$")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\(\s*(.+?)\s*\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# The heartbeat alarm fires when no check succeeded in this many schedule periods.
HEARTBEAT_PERIODS = 2
# CloudWatch refuses an alarm whose period x evaluation periods exceeds 7 days (1 day when the
# period is under an hour, which two periods of under an hour never reach).
MAX_ALARM_WINDOW_SECONDS = 7 * 86400
DAY_SECONDS = 86400
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_VPCE_SERVICE = re.compile(r"^com\.amazonaws\.vpce\.[a-z0-9-]+\.vpce-svc-[0-9a-f]+$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


class ConfigError(ValueError):
    """A setting in cdk.json context (or -c) is invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class AppConfig:
    env_name: str
    region: str
    account: str | None
    availability_zones: tuple[str, ...]
    snowflake_account: str
    snowflake_user: str
    snowflake_role: str
    snowflake_warehouse: str
    snowflake_database: str
    snowflake_schema: str
    snowflake_host: str | None
    snowflake_port: int | None
    snowflake_protocol: str | None
    auth: str
    network: str
    nat_gateways: int
    vpc_cidr: str
    max_azs: int
    snowflake_egress_cidrs: tuple[str, ...]
    privatelink_endpoint_service: str | None
    privatelink_account_url: str | None
    privatelink_ocsp_url: str | None
    interface_endpoints: tuple[str, ...]
    s3_prefix_list_id: str | None
    notebook_instance_type: str
    notebook_volume_gb: int
    notebook_platform: str
    idle_stop_minutes: int
    backup_minutes: int
    removal_policy: str
    log_retention_days: int
    check_schedule: str | None
    alarm_email: str | None

    @property
    def stack_prefix(self) -> str:
        return f"SnowSage-{self.env_name}"

    @property
    def parameter_prefix(self) -> str:
        return f"/snowsage/{self.env_name}/snowflake/"

    @property
    def check_period_seconds(self) -> int | None:
        """How often the scheduled check runs (a day for a daily cron); None when it is off."""
        if self.check_schedule is None:
            return None
        return schedule_period_seconds("check_schedule", self.check_schedule)

    @property
    def account_host(self) -> str:
        """The host the connector reaches: the override, the PrivateLink URL, or the public one."""
        if self.snowflake_host:
            return self.snowflake_host
        if self.network == "privatelink" and self.privatelink_account_url:
            return self.privatelink_account_url
        return f"{self.snowflake_account}.snowflakecomputing.com"


# --------------------------------------------------------------------------- value parsers


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}' has invalid value {value!r}: {allowed}")


def _str(pattern: re.Pattern[str], allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise _fail(key, value, allowed)
        return value

    return parse


def _choice(*options: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        if value not in options:
            raise _fail(key, value, "expected one of " + ", ".join(repr(o) for o in options))
        return str(value)

    return parse


def _int(low: int, high: int, extra: tuple[int, ...] = ()) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        n: int | None = None
        if isinstance(value, bool):
            n = None
        elif isinstance(value, int):
            n = value
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            n = int(value)
        allowed = f"expected a whole number from {low} to {high}"
        if extra:
            allowed += " or " + " or ".join(map(str, extra))
        if n is None or not (low <= n <= high or n in extra):
            raise _fail(key, value, allowed)
        return n

    return parse


def _optional(inner: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def parse(key: str, value: Any) -> Any:
        if (
            value is None
            or value == ""
            or (isinstance(value, str) and value.lower() in ("none", "off", "null"))
        ):
            return None
        return inner(key, value)

    return parse


def _list(key: str, value: Any) -> list[Any]:
    """Lists come as JSON arrays from cdk.json, and as JSON or comma-separated strings from -c."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                raise _fail(key, value, "expected a JSON array or a comma-separated list") from None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    raise _fail(key, value, "expected a list (JSON array or comma-separated string)")


def _cidrs(key: str, value: Any) -> tuple[str, ...]:
    items = _list(key, value)
    if not items:
        raise _fail(key, value, 'expected at least one IPv4 CIDR, e.g. ["0.0.0.0/0"]')
    out = []
    for item in items:
        try:
            net = ipaddress.IPv4Network(str(item), strict=True)
        except ValueError:
            raise _fail(key, item, "expected IPv4 CIDRs in network form such as '203.0.113.0/24'") from None
        out.append(str(net))
    return tuple(out)


def _vpc_cidr(key: str, value: Any) -> str:
    try:
        net = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        raise _fail(key, value, "expected an IPv4 network such as '10.40.0.0/16'") from None
    if not 16 <= net.prefixlen <= 24:
        raise _fail(key, value, "the VPC prefix length must be between /16 and /24")
    if not net.is_private:
        raise _fail(key, value, "use a private (RFC 1918) range such as '10.40.0.0/16'")
    return str(net)


def _snowflake_account(key: str, value: Any) -> str:
    if isinstance(value, str) and "snowflakecomputing" in value:
        raise _fail(
            key,
            value,
            "give the account identifier, not the URL: 'orgname-accountname' (from the URL "
            "'orgname-accountname.snowflakecomputing.com')",
        )
    if not isinstance(value, str) or not (_ORG_ACCOUNT.match(value) or _LEGACY_LOCATOR.match(value)):
        raise _fail(
            key,
            value,
            "expected 'orgname-accountname' (e.g. 'myorg-analytics') or a legacy "
            "'locator.region[.cloud]' (e.g. 'xy12345.us-east-2.aws')",
        )
    return value


def _platform(key: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith("notebook-al2-"):
        raise _fail(
            key,
            value,
            f"Amazon Linux 2 notebook platforms reached end of support on {AL2_END_OF_SUPPORT}; "
            "use 'notebook-al2023-v1'",
        )
    return _str(_PLATFORM, "expected an Amazon Linux 2023 platform such as 'notebook-al2023-v1'")(key, value)


def _endpoints(key: str, value: Any) -> tuple[str, ...] | None:
    if value is None or value == "default":
        return None
    items = [str(i) for i in _list(key, value)] if value != "none" else []
    unknown = [i for i in items if i not in INTERFACE_ENDPOINT_SERVICES]
    if unknown:
        raise _fail(key, unknown[0], "expected services among " + ", ".join(INTERFACE_ENDPOINT_SERVICES))
    return tuple(dict.fromkeys(items))


def _ident(what: str) -> Callable[[str, Any], str]:
    return _str(
        _IDENT,
        f"expected a Snowflake {what} identifier: a letter or underscore, then letters, digits, _ or $",
    )


def _retention(key: str, value: Any) -> int:
    n = _int(1, 3653)(key, value)
    if n not in LOG_RETENTION_DAYS:
        raise _fail(key, value, "CloudWatch Logs accepts " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    return n


def schedule_period_seconds(key: str, value: Any) -> int:
    """The period the heartbeat alarm watches for ``value``, an EventBridge schedule expression.

    rate(N unit) gives N units. A cron schedule has no fixed period, so only one that runs on every
    day is accepted: its hours and minutes repeat daily, so no gap exceeds a day, and the
    heartbeat watches one-day periods. A weekly or monthly cron would leave the alarm either
    blind or firing between runs, so it is refused with the fix.
    """
    usage = "expected an EventBridge schedule such as 'rate(1 hour)' or 'cron(0 8 * * ? *)', or 'off'"
    text = value.strip() if isinstance(value, str) else value
    rate = _RATE.match(text) if isinstance(text, str) else None
    if rate:
        count, unit = int(rate.group(1)), rate.group(2)
        singular = unit.rstrip("s")
        if count < 1:
            raise _fail(key, value, f"a rate needs at least 1 {singular}, e.g. 'rate(1 hour)'")
        # EventBridge itself refuses 'rate(1 hours)' and 'rate(5 minute)' at deploy time.
        if (count == 1) != (unit == singular):
            fixed = f"rate({count} {singular if count == 1 else singular + 's'})"
            raise _fail(
                key, value, f"EventBridge wants the unit singular for 1 and plural otherwise: '{fixed}'"
            )
        period = count * _RATE_UNIT_SECONDS[singular]
        if period * HEARTBEAT_PERIODS > MAX_ALARM_WINDOW_SECONDS:
            longest = MAX_ALARM_WINDOW_SECONDS // HEARTBEAT_PERIODS // 3600
            raise _fail(
                key,
                value,
                f"the heartbeat alarm watches {HEARTBEAT_PERIODS} periods and CloudWatch alarms look back "
                f"at most 7 days, so the longest schedule is 'rate({longest} hours)'",
            )
        return period
    cron = _CRON.match(text) if isinstance(text, str) else None
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise _fail(
                key,
                value,
                "an EventBridge cron has 6 fields (minutes hours day-of-month month day-of-week year), "
                "e.g. 'cron(0 8 * * ? *)'",
            )
        _minutes, _hours, day_of_month, month, day_of_week, year = fields
        if not (day_of_month in ("*", "?") and day_of_week in ("*", "?") and month == "*" and year == "*"):
            raise _fail(
                key,
                value,
                "the heartbeat alarm can only watch a cron that runs every day (day-of-month and "
                "day-of-week '*' or '?', month and year '*'), e.g. 'cron(0 8 * * ? *)'; use "
                "'rate(...)' for anything else",
            )
        return DAY_SECONDS
    raise _fail(key, value, usage)


def _check_schedule(key: str, value: Any) -> str:
    schedule_period_seconds(key, value)
    return str(value).strip()


def _minutes_or_zero(key: str, value: Any) -> int:
    return _int(5, 1440, extra=(0,))(key, value)


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "env_name": _str(
        _ENV_NAME, "expected lowercase letters, digits and '-', starting with a letter, at most 16 characters"
    ),
    "region": _str(_REGION, "expected an AWS region name such as 'us-east-1'"),
    "account": _optional(
        _str(_ACCOUNT_ID, "expected a 12-digit AWS account ID, or null to deploy to the CLI's account")
    ),
    "availability_zones": lambda k, v: _list(k, v),
    "snowflake_account": _snowflake_account,
    "snowflake_user": _ident("user"),
    "snowflake_role": _ident("role"),
    "snowflake_warehouse": _ident("warehouse"),
    "snowflake_database": _ident("database"),
    "snowflake_schema": _ident("schema"),
    "snowflake_host": _optional(
        _str(_HOSTNAME, "expected a host name such as 'xy12345.us-east-1.privatelink.snowflakecomputing.com'")
    ),
    "snowflake_port": _optional(_int(1, 65535)),
    "snowflake_protocol": _optional(_choice("https", "http")),
    "auth": _choice("keypair", "password", "wif"),
    "network": _choice("nat", "privatelink"),
    "nat_gateways": _int(1, 6),
    "vpc_cidr": _vpc_cidr,
    "max_azs": _int(1, 6),
    "snowflake_egress_cidrs": _cidrs,
    "privatelink_endpoint_service": _optional(
        _str(
            _VPCE_SERVICE,
            "expected the Snowflake PrivateLink service name from SYSTEM$GET_PRIVATELINK_CONFIG(), e.g. 'com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0'",
        )
    ),
    "privatelink_account_url": _optional(
        _str(_HOSTNAME, "expected 'privatelink-account-url' from SYSTEM$GET_PRIVATELINK_CONFIG()")
    ),
    "privatelink_ocsp_url": _optional(
        _str(_HOSTNAME, "expected 'privatelink-ocsp-url' from SYSTEM$GET_PRIVATELINK_CONFIG()")
    ),
    "interface_endpoints": _endpoints,
    "s3_prefix_list_id": _optional(
        _str(re.compile(r"^pl-[0-9a-f]{8,17}$"), "expected a managed prefix list ID such as 'pl-63a5400a'")
    ),
    "notebook_instance_type": _str(
        _INSTANCE_TYPE, "expected a SageMaker notebook instance type such as 'ml.t3.medium'"
    ),
    "notebook_volume_gb": _int(5, 16384),
    "notebook_platform": _platform,
    "idle_stop_minutes": _minutes_or_zero,
    "backup_minutes": _minutes_or_zero,
    "removal_policy": _choice("retain", "destroy"),
    "log_retention_days": _retention,
    "check_schedule": _optional(_check_schedule),
    "alarm_email": _optional(_str(_EMAIL, "expected an email address for the failure alarm, or null")),
}

DEFAULTS: dict[str, Any] = {
    "env_name": "dev",
    "region": "us-east-1",
    "account": None,
    "availability_zones": None,
    "snowflake_account": "myorg-myaccount",
    "snowflake_user": "SNOWSAGE_SVC",
    "snowflake_role": "SNOWSAGE_ROLE",
    "snowflake_warehouse": "SNOWSAGE_WH",
    "snowflake_database": "ANALYTICS",
    "snowflake_schema": "PUBLIC",
    "snowflake_host": None,
    "snowflake_port": None,
    "snowflake_protocol": None,
    "auth": "keypair",
    "network": "nat",
    "nat_gateways": 1,
    "vpc_cidr": "10.40.0.0/16",
    "max_azs": 2,
    "snowflake_egress_cidrs": ["0.0.0.0/0"],
    "privatelink_endpoint_service": None,
    "privatelink_account_url": None,
    "privatelink_ocsp_url": None,
    "interface_endpoints": "default",
    "s3_prefix_list_id": None,
    "notebook_instance_type": "ml.t3.medium",
    "notebook_volume_gb": 20,
    "notebook_platform": "notebook-al2023-v1",
    "idle_stop_minutes": 60,
    "backup_minutes": 15,
    "removal_policy": "retain",
    "log_retention_days": 365,
    "check_schedule": "rate(1 hour)",
    "alarm_email": None,
}
assert set(PARSERS) == set(DEFAULTS) == {f.name for f in fields(AppConfig)}

VALID_KEYS = tuple(PARSERS)


def _is_cdk_key(key: str) -> bool:
    # Feature flags ("@aws-cdk/..."), CLI-injected keys ("aws:cdk:..."), cached lookups
    # ("availability-zones:account=..."), acknowledgements and nag options are not ours.
    return key.startswith("@") or ":" in key or key in ("acknowledged-issue-numbers", "cli-telemetry")


def load_config(context: Mapping[str, Any]) -> AppConfig:
    """Parse the whole context; every problem is reported, each on its own line, in one error."""
    unknown = sorted(k for k in context if not _is_cdk_key(k) and k not in PARSERS)
    errors: list[str] = []
    for key in unknown:
        close = [v for v in VALID_KEYS if _similar(key, v)]
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        errors.append(f"unknown config key '{key}'{hint}; valid keys are: {', '.join(VALID_KEYS)}")

    values: dict[str, Any] = {}
    for key, parse in PARSERS.items():
        raw = context.get(key, DEFAULTS[key])
        try:
            values[key] = parse(key, raw)
        except ConfigError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            values = _cross_check(values)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    return AppConfig(**values)


def _cross_check(v: dict[str, Any]) -> dict[str, Any]:
    region = v["region"]
    azs = v["availability_zones"]
    if azs is None:
        azs = [f"{region}{letter}" for letter in "abc"]
    bad_az = [a for a in azs if not (isinstance(a, str) and re.fullmatch(re.escape(region) + r"[a-z]", a))]
    if bad_az:
        raise _fail(
            "availability_zones", bad_az[0], f"expected zone names in region {region}, e.g. '{region}a'"
        )
    v["availability_zones"] = tuple(azs)
    if v["max_azs"] > len(azs):
        raise _fail(
            "max_azs",
            v["max_azs"],
            f"at most {len(azs)}, the number of zones in 'availability_zones' ({', '.join(azs)})",
        )
    if v["network"] == "nat" and v["nat_gateways"] > v["max_azs"]:
        raise _fail(
            "nat_gateways", v["nat_gateways"], f"at most max_azs ({v['max_azs']}): one NAT gateway per zone"
        )
    if v["network"] == "privatelink":
        for key in ("privatelink_endpoint_service", "privatelink_account_url", "privatelink_ocsp_url"):
            if not v[key]:
                raise ConfigError(
                    f"config key '{key}' is required when network is 'privatelink': run "
                    "SELECT SYSTEM$GET_PRIVATELINK_CONFIG(); in Snowflake and copy the value"
                )
        if not v["privatelink_account_url"].endswith(".privatelink.snowflakecomputing.com"):
            raise _fail(
                "privatelink_account_url",
                v["privatelink_account_url"],
                "expected a host ending in '.privatelink.snowflakecomputing.com'",
            )
        if not v["privatelink_endpoint_service"].startswith(f"com.amazonaws.vpce.{region}."):
            raise _fail(
                "privatelink_endpoint_service",
                v["privatelink_endpoint_service"],
                f"the endpoint service must be in the deployment region {region}",
            )
    if v["interface_endpoints"] is None:
        v["interface_endpoints"] = PRIVATELINK_DEFAULT_ENDPOINTS if v["network"] == "privatelink" else ()
    if v["network"] == "privatelink":
        missing = [s for s in ("ssm", "kms", "logs", "sagemaker_api") if s not in v["interface_endpoints"]]
        if missing:
            raise _fail(
                "interface_endpoints",
                list(v["interface_endpoints"]),
                f"privatelink mode has no internet, so it needs endpoints for {', '.join(missing)}",
            )
    if "0.0.0.0/0" not in v["snowflake_egress_cidrs"] and not v["s3_prefix_list_id"]:
        raise ConfigError(
            "config key 's3_prefix_list_id' is required when 'snowflake_egress_cidrs' does not include "
            "'0.0.0.0/0': the notebook reaches S3 (wheelhouse, results) through the gateway endpoint, "
            "which security groups allow by prefix list; find it with `aws ec2 describe-managed-prefix-lists "
            f"--filters Name=prefix-list-name,Values=com.amazonaws.{region}.s3`"
        )
    if v["snowflake_protocol"] == "http" and not v["snowflake_host"]:
        raise _fail(
            "snowflake_protocol",
            "http",
            "plain http is only for a local emulator named by 'snowflake_host'; use 'https'",
        )
    if v["snowflake_port"] is not None and not v["snowflake_host"]:
        raise _fail("snowflake_port", v["snowflake_port"], "a port override needs 'snowflake_host' as well")
    return v


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8
