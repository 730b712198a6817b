"""The app's one configuration: cdk.json context validated into one frozen pydantic ``AppConfig``.

The model is the only place a default lives; cdk.json holds what a user is expected to set and
``-c key=value`` overrides any key. Values given with ``-c`` arrive as strings, so every validator
accepts the string form too. ``load_config`` reports every bad value at once, one line each,
naming the key, the value seen and what is allowed, as ``ConfigError``; app.py prints it and exits
before anything is synthesized.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    from types import ModuleType

AL2_END_OF_SUPPORT = "2026-06-30"

InterfaceEndpoint = Literal[
    "ssm", "kms", "logs", "monitoring", "sts", "sagemaker_api", "sagemaker_notebook", "lambda"
]
INTERFACE_ENDPOINT_SERVICES: tuple[str, ...] = get_args(InterfaceEndpoint)
# What the notebook and the check function need to start, log and read their parameters with no
# internet at all; privatelink mode turns these on unless the user chooses otherwise.
PRIVATELINK_DEFAULT_ENDPOINTS: tuple[InterfaceEndpoint, ...] = (
    "ssm",
    "kms",
    "logs",
    "monitoring",
    "sts",
    "sagemaker_api",
    "sagemaker_notebook",
)

# CloudWatch Logs accepts only these retention periods.
LogRetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]  # fmt: skip
LOG_RETENTION_DAYS: tuple[int, ...] = get_args(LogRetentionDays)

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
_PREFIX_LIST = re.compile(r"^pl-[0-9a-f]{8,17}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}(\.[A-Za-z_][A-Za-z0-9_$]{0,254}){0,2}$")
_QUERY = re.compile(r"^\s*(select|with)\s", re.IGNORECASE)
_IAM_USER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:user/[\w+=,.@/-]{1,512}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
# The S3 gateway endpoint's AWS-managed prefix list (com.amazonaws.<region>.s3), the same ID in every
# account of a region; the training security group reaches S3 by it. Elsewhere s3_prefix_list_id says it.
S3_PREFIX_LISTS: Mapping[str, str] = {"us-east-1": "pl-63a5400a", "us-east-2": "pl-7ba54012"}
# Client mode keeps one upload per file open, and each training instance needs a file of its own.
MAX_TRAINING_INSTANCES = 128
MAX_TRAINING_RUNTIME_MINUTES = 28 * 24 * 60  # SageMaker's limit: 28 days


class ConfigError(ValueError):
    """A setting in cdk.json context (or -c) is invalid; the message says which and how to fix it."""


class _Problem(ValueError):
    """One line of a ConfigError. ``key`` is set only where pydantic cannot tell the key: checks
    that span several settings."""

    def __init__(self, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self.text, self.key = text, key


def _invalid(value: Any, allowed: str, key: str | None = None) -> _Problem:
    return _Problem(f"has invalid value {value!r}: {allowed}", key)


# Value parsers: each returns the parsed value or raises _Problem; pydantic runs them before its type check.

Parser = Callable[[Any], Any]


def _pattern(pattern: re.Pattern[str], allowed: str) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise _invalid(value, allowed)
        return value

    return parse


def _whole(low: int, high: int, *also: int) -> Parser:
    # Not pydantic's int: it would take true as 1 and "2.0" as 2.
    allowed = f"expected a whole number from {low} to {high}" + "".join(f" or {n}" for n in also)

    def parse(value: Any) -> int:
        n: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            n = int(value)
        if n is None or not (low <= n <= high or n in also):
            raise _invalid(value, allowed)
        return n

    return parse


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("", "none", "off", "null"))


def _optional(inner: Parser | None = None) -> BeforeValidator:
    """null, "" or the strings none/off/null (what -c can say) leave the setting unset."""
    return BeforeValidator(lambda v: None if _unset(v) else inner(v) if inner else v)


def _list(value: Any) -> list[Any]:
    """Lists come as JSON arrays from cdk.json, and as JSON or comma-separated strings from -c."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                raise _invalid(value, "expected a JSON array or a comma-separated list") from None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    raise _invalid(value, "expected a list (JSON array or comma-separated string)")


def _cidrs(value: Any) -> tuple[str, ...]:
    items = _list(value)
    if not items:
        raise _invalid(value, 'expected at least one IPv4 CIDR, e.g. ["0.0.0.0/0"]')
    out = []
    for item in items:
        try:
            net = ipaddress.IPv4Network(str(item), strict=True)
        except ValueError:
            raise _invalid(item, "expected IPv4 CIDRs in network form such as '203.0.113.0/24'") from None
        out.append(str(net))
    return tuple(out)


def _vpc_cidr(value: Any) -> str:
    try:
        net = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        raise _invalid(value, "expected an IPv4 network such as '10.40.0.0/16'") from None
    if not 16 <= net.prefixlen <= 24:
        raise _invalid(value, "the VPC prefix length must be between /16 and /24")
    if not net.is_private:
        raise _invalid(value, "use a private (RFC 1918) range such as '10.40.0.0/16'")
    return str(net)


def _snowflake_account(value: Any) -> str:
    if isinstance(value, str) and "snowflakecomputing" in value:
        raise _invalid(
            value,
            "give the account identifier, not the URL: 'orgname-accountname' (from the URL "
            "'orgname-accountname.snowflakecomputing.com')",
        )
    if not isinstance(value, str) or not (_ORG_ACCOUNT.match(value) or _LEGACY_LOCATOR.match(value)):
        raise _invalid(
            value,
            "expected 'orgname-accountname' (e.g. 'myorg-analytics') or a legacy "
            "'locator.region[.cloud]' (e.g. 'xy12345.us-east-2.aws')",
        )
    return value


def _platform(value: Any) -> str:
    if isinstance(value, str) and value.startswith("notebook-al2-"):
        raise _invalid(
            value,
            f"Amazon Linux 2 notebook platforms reached end of support on {AL2_END_OF_SUPPORT}; "
            "use 'notebook-al2023-v1'",
        )
    return str(
        _pattern(_PLATFORM, "expected an Amazon Linux 2023 platform such as 'notebook-al2023-v1'")(value)
    )


def _ident(what: str) -> BeforeValidator:
    return BeforeValidator(
        _pattern(
            _IDENT,
            f"expected a Snowflake {what} identifier: a letter or underscore, then letters, digits, _ or $",
        )
    )


def _retention(value: Any) -> int:
    n = int(_whole(1, 3653)(value))
    if n not in LOG_RETENTION_DAYS:
        raise _invalid(value, "CloudWatch Logs accepts " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    return n


def schedule_period_seconds(value: Any) -> int:
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
            raise _invalid(value, f"a rate needs at least 1 {singular}, e.g. 'rate(1 hour)'")
        # EventBridge itself refuses 'rate(1 hours)' and 'rate(5 minute)' at deploy time.
        if (count == 1) != (unit == singular):
            fixed = f"rate({count} {singular if count == 1 else singular + 's'})"
            raise _invalid(
                value, f"EventBridge wants the unit singular for 1 and plural otherwise: '{fixed}'"
            )
        period = count * _RATE_UNIT_SECONDS[singular]
        if period * HEARTBEAT_PERIODS > MAX_ALARM_WINDOW_SECONDS:
            longest = MAX_ALARM_WINDOW_SECONDS // HEARTBEAT_PERIODS // 3600
            raise _invalid(
                value,
                f"the heartbeat alarm watches {HEARTBEAT_PERIODS} periods and CloudWatch alarms look back "
                f"at most 7 days, so the longest schedule is 'rate({longest} hours)'",
            )
        return period
    cron = _CRON.match(text) if isinstance(text, str) else None
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise _invalid(
                value,
                "an EventBridge cron has 6 fields (minutes hours day-of-month month day-of-week year), "
                "e.g. 'cron(0 8 * * ? *)'",
            )
        _minutes, _hours, day_of_month, month, day_of_week, year = fields
        if not (day_of_month in ("*", "?") and day_of_week in ("*", "?") and month == "*" and year == "*"):
            raise _invalid(
                value,
                "the heartbeat alarm can only watch a cron that runs every day (day-of-month and "
                "day-of-week '*' or '?', month and year '*'), e.g. 'cron(0 8 * * ? *)'; use "
                "'rate(...)' for anything else",
            )
        return DAY_SECONDS
    raise _invalid(value, usage)


def _check_schedule(value: Any) -> str:
    schedule_period_seconds(value)
    return str(value).strip()


def _training_source(value: Any) -> str:
    if isinstance(value, str) and _QUERY.match(value):
        return value.strip().rstrip(";").strip()
    if isinstance(value, str) and _TABLE.match(value):
        return value
    raise _invalid(
        value,
        "expected a table (table, schema.table or db.schema.table, each part a plain Snowflake "
        "identifier) or one SELECT (or WITH ... SELECT) query",
    )


def _switch(value: Any) -> bool:
    """true/false as JSON, or the words -c can say."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "on", "yes", "false", "off", "no"):
        return value.strip().lower() in ("true", "on", "yes")
    raise _invalid(value, "expected true or false (or on/off)")


def _columns(value: Any) -> tuple[str, ...]:
    items = _list(value)
    if not items:
        raise _invalid(
            value, "name at least one feature column, or leave it unset for every other numeric column"
        )
    for item in items:
        if not (isinstance(item, str) and _IDENT.match(item)):
            raise _invalid(
                item,
                "expected Snowflake column identifiers: a letter or underscore, then letters, digits, _ or $",
            )
    upper = [i.upper() for i in items]
    dupes = sorted({c for c in upper if upper.count(c) > 1})
    if dupes:
        raise _invalid(value, f"name each column once ({', '.join(dupes)} appears more than once)")
    return tuple(items)


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _invalid(value, "expected a number")


def _time_zone(value: Any) -> str:
    usage = "expected an IANA time zone such as 'Europe/Berlin' or 'America/New_York'"
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+/-]*", value):
        raise _invalid(value, usage)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid(value, usage) from None
    return value


def _mapping(value: Any) -> dict[str, Any]:
    """A JSON object from cdk.json, or its text from -c."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise _invalid(value, 'expected a JSON object such as {"max_depth": 6, "eta": 0.2}') from None
    if not isinstance(value, Mapping):
        raise _invalid(value, 'expected a JSON object such as {"max_depth": 6, "eta": 0.2}')
    return dict(value)


def _training_definition() -> ModuleType:
    """The pipeline definition's tables (hyperparameters, image regions, objectives). Imported on
    use: the constructs package imports this module."""
    from .constructs.training import pipeline_definition

    return pipeline_definition


def _default_threshold(data: dict[str, Any]) -> float:
    """An RMSE the sandbox's housing prices pass (about 155,000 on their numeric columns, below the
    price's standard deviation of 250,000: better than predicting the mean), or an AUC better than chance."""
    return 0.7 if data.get("training_objective") == "binary" else 200000.0


def _default_stage(data: dict[str, Any]) -> str:
    return f"{data.get('snowflake_database', 'ANALYTICS')}.{data.get('snowflake_schema', 'PUBLIC')}.SNOWSAGE_TRAINING"


# Defaults that depend on settings validated before them (pydantic passes those as ``data``).


def _default_zones(data: dict[str, Any]) -> tuple[str, ...]:
    """Zones a, b and c of the region: pinned either way, so synth never looks them up."""
    region = data.get("region")
    return tuple(f"{region}{letter}" for letter in "abc") if region else ()


def _default_endpoints(data: dict[str, Any]) -> tuple[InterfaceEndpoint, ...]:
    """None in nat mode; what the notebook and the check need without internet in privatelink mode."""
    return PRIVATELINK_DEFAULT_ENDPOINTS if data.get("network") == "privatelink" else ()


_HOST = "expected a host name such as 'xy12345.us-east-1.privatelink.snowflakecomputing.com'"
_PL_CONFIG = "from SYSTEM$GET_PRIVATELINK_CONFIG()"
_MINUTES_OR_OFF = BeforeValidator(_whole(5, 1440, 0))


class AppConfig(BaseModel):
    """Every setting of the app, its default and what is allowed; the README table lists them all."""

    # validate_default: a default goes through the same checks as a value a user typed.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    env_name: Annotated[
        str,
        BeforeValidator(
            _pattern(
                _ENV_NAME,
                "expected lowercase letters, digits and '-', starting with a letter, at most 16 characters",
            )
        ),
    ] = "dev"
    region: Annotated[
        str, BeforeValidator(_pattern(_REGION, "expected an AWS region name such as 'us-east-1'"))
    ] = "us-east-1"
    account: Annotated[
        str | None,
        _optional(
            _pattern(
                _ACCOUNT_ID, "expected a 12-digit AWS account ID, or null to deploy to the CLI's account"
            )
        ),
    ] = None
    availability_zones: tuple[str, ...] = Field(default_factory=_default_zones)
    snowflake_account: Annotated[str, BeforeValidator(_snowflake_account)] = "myorg-myaccount"
    snowflake_user: Annotated[str, _ident("user")] = "SNOWSAGE_SVC"
    snowflake_role: Annotated[str, _ident("role")] = "SNOWSAGE_ROLE"
    snowflake_warehouse: Annotated[str, _ident("warehouse")] = "SNOWSAGE_WH"
    snowflake_database: Annotated[str, _ident("database")] = "ANALYTICS"
    snowflake_schema: Annotated[str, _ident("schema")] = "PUBLIC"
    snowflake_host: Annotated[str | None, _optional(_pattern(_HOSTNAME, _HOST))] = None
    snowflake_port: Annotated[int | None, _optional(_whole(1, 65535))] = None
    snowflake_protocol: Annotated[Literal["https", "http"] | None, _optional()] = None
    auth: Literal["keypair", "password", "wif"] = "keypair"
    network: Literal["nat", "privatelink"] = "nat"
    nat_gateways: Annotated[int, BeforeValidator(_whole(1, 6))] = 1
    vpc_cidr: Annotated[str, BeforeValidator(_vpc_cidr)] = "10.40.0.0/16"
    max_azs: Annotated[int, BeforeValidator(_whole(1, 6))] = 2
    snowflake_egress_cidrs: Annotated[tuple[str, ...], BeforeValidator(_cidrs)] = ("0.0.0.0/0",)
    privatelink_endpoint_service: Annotated[
        str | None,
        _optional(
            _pattern(
                _VPCE_SERVICE,
                f"expected the Snowflake PrivateLink service name {_PL_CONFIG}, e.g. 'com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0'",
            )
        ),
    ] = None
    privatelink_account_url: Annotated[
        str | None, _optional(_pattern(_HOSTNAME, f"expected 'privatelink-account-url' {_PL_CONFIG}"))
    ] = None
    privatelink_ocsp_url: Annotated[
        str | None, _optional(_pattern(_HOSTNAME, f"expected 'privatelink-ocsp-url' {_PL_CONFIG}"))
    ] = None
    interface_endpoints: tuple[InterfaceEndpoint, ...] = Field(default_factory=_default_endpoints)
    s3_prefix_list_id: Annotated[
        str | None,
        _optional(_pattern(_PREFIX_LIST, "expected a managed prefix list ID such as 'pl-63a5400a'")),
    ] = None
    notebook_instance_type: Annotated[
        str,
        BeforeValidator(
            _pattern(_INSTANCE_TYPE, "expected a SageMaker notebook instance type such as 'ml.t3.medium'")
        ),
    ] = "ml.t3.medium"
    notebook_volume_gb: Annotated[int, BeforeValidator(_whole(5, 16384))] = 20
    notebook_platform: Annotated[str, BeforeValidator(_platform)] = "notebook-al2023-v1"
    idle_stop_minutes: Annotated[int, _MINUTES_OR_OFF] = 60
    backup_minutes: Annotated[int, _MINUTES_OR_OFF] = 15
    removal_policy: Literal["retain", "destroy"] = "retain"
    log_retention_days: Annotated[LogRetentionDays, BeforeValidator(_retention)] = 365
    check_schedule: Annotated[str | None, _optional(_check_schedule)] = "rate(1 hour)"
    alarm_email: Annotated[
        str | None, _optional(_pattern(_EMAIL, "expected an email address for the failure alarm, or null"))
    ] = None
    # Scheduled training (the Training stack). Defaults train on the sandbox's housing table.
    training_source: Annotated[str, BeforeValidator(_training_source)] = "HOUSING"
    training_label: Annotated[str, _ident("column")] = "PRICE"
    training_id_column: Annotated[str, _ident("column")] = "HOUSE_ID"
    training_features: Annotated[tuple[str, ...] | None, _optional(_columns)] = None
    training_objective: Literal["regression", "binary"] = "regression"
    training_metric_threshold: Annotated[float, BeforeValidator(_number)] = Field(
        default_factory=_default_threshold
    )
    training_validation_percent: Annotated[int, BeforeValidator(_whole(1, 99))] = 20
    training_minimum_rows: Annotated[int, BeforeValidator(_whole(1, 1_000_000_000))] = 100
    training_instance_type: Annotated[
        str,
        BeforeValidator(
            _pattern(_INSTANCE_TYPE, "expected a SageMaker training instance type such as 'ml.m5.xlarge'")
        ),
    ] = "ml.m5.xlarge"
    training_instance_count: Annotated[int, BeforeValidator(_whole(1, MAX_TRAINING_INSTANCES))] = 2
    training_spot: Annotated[bool, BeforeValidator(_switch)] = True
    training_max_runtime_minutes: Annotated[int, BeforeValidator(_whole(1, MAX_TRAINING_RUNTIME_MINUTES))] = (
        60
    )
    training_hyperparameters: Annotated[dict[str, Any], BeforeValidator(_mapping)] = {}  # pydantic copies it
    training_exporter: Literal["client", "unload"] = "client"
    training_storage_integration: Annotated[str | None, _optional(_ident("storage integration").func)] = None
    training_storage_aws_iam_user_arn: Annotated[
        str | None,
        _optional(
            _pattern(
                _IAM_USER_ARN,
                "expected STORAGE_AWS_IAM_USER_ARN from DESC INTEGRATION, e.g. 'arn:aws:iam::123456789012:user/abc1-b-self1234'",
            )
        ),
    ] = None
    training_storage_aws_external_id: Annotated[
        str | None,
        _optional(
            _pattern(
                _EXTERNAL_ID,
                "expected STORAGE_AWS_EXTERNAL_ID from DESC INTEGRATION, e.g. 'MYORG_SFCRole=2_abc123='",
            )
        ),
    ] = None
    training_stage: Annotated[
        str,
        BeforeValidator(
            _pattern(
                _TABLE, "expected a stage name (stage, schema.stage or db.schema.stage) of plain identifiers"
            )
        ),
    ] = Field(default_factory=_default_stage)
    training_schedule: Annotated[str | None, _optional(_check_schedule)] = None
    training_schedule_time_zone: Annotated[str | None, _optional(_time_zone)] = None
    training_run_retention_days: Annotated[int, BeforeValidator(_whole(1, 3650))] = 30

    @field_validator("availability_zones", mode="before")
    @classmethod
    def _zones_in_region(cls, value: Any, info: ValidationInfo) -> tuple[Any, ...]:
        region = info.data.get("region")
        zones = _default_zones(info.data) if value is None else _list(value)
        if region is None:  # the region itself is wrong and reported; nothing to compare with
            return tuple(zones)
        bad = [z for z in zones if not (isinstance(z, str) and re.fullmatch(re.escape(region) + r"[a-z]", z))]
        if bad:
            raise _invalid(bad[0], f"expected zone names in region {region}, e.g. '{region}a'")
        return tuple(zones)

    @field_validator("interface_endpoints", mode="before")
    @classmethod
    def _known_endpoints(cls, value: Any, info: ValidationInfo) -> tuple[Any, ...]:
        if value is None or value == "default":
            return _default_endpoints(info.data)
        items = [str(i) for i in _list(value)] if value != "none" else []
        unknown = [i for i in items if i not in INTERFACE_ENDPOINT_SERVICES]
        if unknown:
            raise _invalid(unknown[0], "expected services among " + ", ".join(INTERFACE_ENDPOINT_SERVICES))
        return tuple(dict.fromkeys(items))

    @field_validator("training_hyperparameters", mode="after")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        objective = info.data.get("training_objective")
        training_pd = _training_definition()
        if objective is None:  # the objective itself is wrong and reported
            return value
        try:
            training_pd.check_hyperparameters(value, objective=objective)
        except training_pd.PipelineDefinitionError as exc:
            raise _invalid(value, str(exc)) from None
        return value

    @model_validator(mode="after")
    def _settings_agree(self) -> AppConfig:
        """Checks that span several settings; they run once every value is valid on its own."""
        region, zones = self.region, self.availability_zones
        if self.max_azs > len(zones):
            raise _invalid(
                self.max_azs,
                f"at most {len(zones)}, the number of zones in 'availability_zones' ({', '.join(zones)})",
                key="max_azs",
            )
        if self.network == "nat" and self.nat_gateways > self.max_azs:
            raise _invalid(
                self.nat_gateways,
                f"at most max_azs ({self.max_azs}): one NAT gateway per zone",
                key="nat_gateways",
            )
        if self.network == "privatelink":
            for key in ("privatelink_endpoint_service", "privatelink_account_url", "privatelink_ocsp_url"):
                if not getattr(self, key):
                    raise _Problem(
                        "is required when network is 'privatelink': run "
                        "SELECT SYSTEM$GET_PRIVATELINK_CONFIG(); in Snowflake and copy the value",
                        key=key,
                    )
            url, service = self.privatelink_account_url or "", self.privatelink_endpoint_service or ""
            if not url.endswith(".privatelink.snowflakecomputing.com"):
                raise _invalid(
                    url,
                    "expected a host ending in '.privatelink.snowflakecomputing.com'",
                    key="privatelink_account_url",
                )
            if not service.startswith(f"com.amazonaws.vpce.{region}."):
                raise _invalid(
                    service,
                    f"the endpoint service must be in the deployment region {region}",
                    key="privatelink_endpoint_service",
                )
            missing = [
                s for s in ("ssm", "kms", "logs", "sagemaker_api") if s not in self.interface_endpoints
            ]
            if missing:
                raise _invalid(
                    list(self.interface_endpoints),
                    f"privatelink mode has no internet, so it needs endpoints for {', '.join(missing)}",
                    key="interface_endpoints",
                )
        if "0.0.0.0/0" not in self.snowflake_egress_cidrs and not self.s3_prefix_list_id:
            raise _Problem(
                "is required when 'snowflake_egress_cidrs' does not include "
                "'0.0.0.0/0': the notebook reaches S3 (wheelhouse, results) through the gateway endpoint, "
                "which security groups allow by prefix list; find it with `aws ec2 describe-managed-prefix-lists "
                f"--filters Name=prefix-list-name,Values=com.amazonaws.{region}.s3`",
                key="s3_prefix_list_id",
            )
        if self.snowflake_protocol == "http" and not self.snowflake_host:
            raise _invalid(
                "http",
                "plain http is only for a local emulator named by 'snowflake_host'; use 'https'",
                key="snowflake_protocol",
            )
        if self.snowflake_port is not None and not self.snowflake_host:
            raise _invalid(
                self.snowflake_port, "a port override needs 'snowflake_host' as well", key="snowflake_port"
            )
        return self

    @model_validator(mode="after")
    def _training_agrees(self) -> AppConfig:
        """The Training stack's settings that depend on each other or on the region."""
        training_pd = _training_definition()
        if self.region not in training_pd.XGBOOST_REGISTRY_ACCOUNTS:
            raise _invalid(
                self.region,
                "the Training stack's built-in XGBoost image is published for "
                + ", ".join(sorted(training_pd.XGBOOST_REGISTRY_ACCOUNTS))
                + "; deploy to one of those",
                key="region",
            )
        if not self.s3_prefix_list_id and self.region not in S3_PREFIX_LISTS:
            raise _Problem(
                f"is required in {self.region}: the training instances reach S3 only through its prefix "
                "list; find it with `aws ec2 describe-managed-prefix-lists --filters "
                f"Name=prefix-list-name,Values=com.amazonaws.{self.region}.s3`",
                key="s3_prefix_list_id",
            )
        label, id_column = self.training_label.upper(), self.training_id_column.upper()
        if label == id_column:
            raise _invalid(
                self.training_id_column,
                f"the id column splits the rows and cannot be the label '{self.training_label}'",
                key="training_id_column",
            )
        taken = [f for f in self.training_features or () if f.upper() in (label, id_column)]
        if taken:
            raise _invalid(
                taken[0],
                f"the features may not include the label '{self.training_label}' or the id column "
                f"'{self.training_id_column}'",
                key="training_features",
            )
        spec = training_pd.OBJECTIVES[self.training_objective]
        threshold = self.training_metric_threshold
        if self.training_objective == "binary" and not 0 < threshold <= 1:
            raise _invalid(
                threshold,
                f"the binary gate reads {spec.metric}, so the threshold is between 0 and 1 (e.g. 0.7)",
                key="training_metric_threshold",
            )
        if self.training_objective == "regression" and not threshold > 0:
            raise _invalid(
                threshold,
                f"the regression gate reads {spec.metric}, so the threshold is above 0",
                key="training_metric_threshold",
            )
        if self.training_exporter == "unload":
            for key in (
                "training_storage_integration",
                "training_storage_aws_iam_user_arn",
                "training_storage_aws_external_id",
            ):
                if not getattr(self, key):
                    raise _Problem(
                        "is required when training_exporter is 'unload': run `snowsage train setup-sql`, "
                        "let the Snowflake admin create the integration, then set the integration name "
                        "and the two values DESC INTEGRATION shows",
                        key=key,
                    )
        if self.training_schedule_time_zone and not (self.training_schedule or "").startswith("cron("):
            raise _invalid(
                self.training_schedule_time_zone,
                "a time zone applies to a 'cron(...)' training_schedule only",
                key="training_schedule_time_zone",
            )
        return self

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
        return schedule_period_seconds(self.check_schedule)

    @property
    def training_period_seconds(self) -> int | None:
        """How often scheduled training runs (a day for a daily cron); None when it is off."""
        if self.training_schedule is None:
            return None
        return schedule_period_seconds(self.training_schedule)

    @property
    def training_s3_prefix_list_id(self) -> str:
        """The prefix list the training instances reach S3 by (validated to exist)."""
        return self.s3_prefix_list_id or S3_PREFIX_LISTS[self.region]

    def training_export_fields(self) -> dict[str, Any]:
        """The export function's static settings (``snowsage.training.spec.export_config`` fields)."""
        is_query = bool(_QUERY.match(self.training_source))
        return {
            "query" if is_query else "table": self.training_source,
            "label": self.training_label,
            "id_column": self.training_id_column,
            "features": list(self.training_features) if self.training_features else None,
            "validation_percent": self.training_validation_percent,
            "files": self.training_instance_count,
            "exporter": self.training_exporter,
            "stage": self.training_stage if self.training_exporter == "unload" else None,
        }

    @property
    def account_host(self) -> str:
        """The host the connector reaches: the override, the PrivateLink URL, or the public one."""
        if self.snowflake_host:
            return self.snowflake_host
        if self.network == "privatelink" and self.privatelink_account_url:
            return self.privatelink_account_url
        return f"{self.snowflake_account}.snowflakecomputing.com"


VALID_KEYS = tuple(AppConfig.model_fields)


def _is_cdk_key(key: str) -> bool:
    # Feature flags ("@aws-cdk/..."), CLI-injected keys ("aws:cdk:..."), cached lookups
    # ("availability-zones:account=..."), acknowledgements and nag options are not ours.
    return key.startswith("@") or ":" in key or key in ("acknowledged-issue-numbers", "cli-telemetry")


def load_config(context: Mapping[str, Any]) -> AppConfig:
    """Validate the whole context; every problem is reported, each on its own line, in one error."""
    try:
        return AppConfig.model_validate({k: v for k, v in context.items() if not _is_cdk_key(k)})
    except ValidationError as exc:
        # A default computed from other settings is not computed once one of them is wrong;
        # that setting's own line says what to fix.
        errors = [e for e in exc.errors() if e["type"] != "default_factory_not_called"]
    unknown = sorted(_describe(e) for e in errors if e["type"] == "extra_forbidden")
    invalid = [_describe(e) for e in errors if e["type"] != "extra_forbidden"]
    raise ConfigError("\n".join(unknown + invalid))


def _describe(error: ErrorDetails) -> str:
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, VALID_KEYS, n=1, cutoff=0.8)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown config key '{key}'{hint}; valid keys are: {', '.join(VALID_KEYS)}"
    problem = error.get("ctx", {}).get("error")
    if isinstance(problem, _Problem):
        return f"config key '{problem.key or key}' {problem.text}"
    if error["type"] == "literal_error":
        options = ", ".join(repr(o) for o in _literal_options(AppConfig.model_fields[key].annotation))
        return f"config key '{key}' has invalid value {error['input']!r}: expected one of {options}"
    return f"config key '{key}' has invalid value {error['input']!r}: {error['msg']}"


def _literal_options(annotation: Any) -> list[Any]:
    """The options of a Literal, also inside ``X | None`` and ``tuple[X, ...]``."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if get_origin(annotation) in (Union, tuple) or type(annotation).__name__ == "UnionType":
        return [o for arg in get_args(annotation) for o in _literal_options(arg)]
    return []
