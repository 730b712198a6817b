"""Snowflake-side set-up for the training export, and reading back what the admin's DESC shows.

``source_grants_sql`` (both exporters) and ``unload_setup_sql`` (the storage integration with
``IF NOT EXISTS``, never ``CREATE OR REPLACE``, which would issue a new external id and break the
unload role's trust; the KMS-encrypted stage; the grants) return statements for a Snowflake admin.
``parse_desc_integration`` turns the pasted output of ``DESC INTEGRATION`` (SnowSQL's text table,
Snowsight's CSV or a tab-separated copy) into the two values the unload role's trust needs.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from snowsage.training.spec import RUNS_PREFIX, ExportInputError, plain_identifier, qualified_name

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_KMS_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}")
_USER_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:user/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

USER_ARN_PROPERTY = "STORAGE_AWS_IAM_USER_ARN"
EXTERNAL_ID_PROPERTY = "STORAGE_AWS_EXTERNAL_ID"


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _checked(pattern: re.Pattern[str], value: str, what: str, fix: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ExportInputError(f"{what} is {value!r}; {fix}")
    return value


def stage_url(bucket: str) -> str:
    """The stage's URL and the integration's one allowed location: the runs prefix, nothing else."""
    _checked(_BUCKET, bucket, "bucket", "pass the results bucket's name (the stack output)")
    return f"s3://{bucket}/{RUNS_PREFIX}"


def _usage_on_parents(name: str, role: str) -> list[str]:
    parts = name.split(".")
    out = []
    if len(parts) == 3:
        out.append(f"GRANT USAGE ON DATABASE {parts[0]} TO ROLE {role};")
    if len(parts) >= 2:
        out.append(f"GRANT USAGE ON SCHEMA {'.'.join(parts[:-1])} TO ROLE {role};")
    return out


def source_grants_sql(*, role: str, table: str | None) -> list[str]:
    """Read access to the source for the service role (a query source: the tables it reads)."""
    role_sql = plain_identifier(role, "service role")
    if table is None:
        return [f"-- the source is a query: GRANT SELECT on every table it reads TO ROLE {role_sql};"]
    table_sql = qualified_name(table, "source table")
    return [*_usage_on_parents(table_sql, role_sql), f"GRANT SELECT ON TABLE {table_sql} TO ROLE {role_sql};"]


def unload_setup_sql(
    *, integration: str, role_arn: str, bucket: str, stage: str, kms_key_arn: str, role: str
) -> list[str]:
    """The integration, the stage (SSE-KMS with the bucket's key) and the grants, then the DESC to run."""
    name = plain_identifier(integration, "storage integration")
    arn = _checked(_ROLE_ARN, role_arn, "unload role ARN", "pass the Training stack's unload role ARN output")
    key = _checked(_KMS_ARN, kms_key_arn, "KMS key ARN", "pass the Data stack's key ARN output")
    stage_sql = qualified_name(stage, "stage")
    role_sql = plain_identifier(role, "service role")
    url = stage_url(bucket)
    return [
        "-- IF NOT EXISTS on purpose: CREATE OR REPLACE would issue a new external id and break the "
        "unload role's trust",
        f"CREATE STORAGE INTEGRATION IF NOT EXISTS {name} TYPE = EXTERNAL_STAGE STORAGE_PROVIDER = 'S3' "
        f"ENABLED = TRUE STORAGE_AWS_ROLE_ARN = {_literal(arn)} STORAGE_ALLOWED_LOCATIONS = ({_literal(url)});",
        f"CREATE STAGE IF NOT EXISTS {stage_sql} URL = {_literal(url)} STORAGE_INTEGRATION = {name} "
        f"ENCRYPTION = (TYPE = 'AWS_SSE_KMS' KMS_KEY_ID = {_literal(key)}) FILE_FORMAT = (TYPE = PARQUET);",
        *_usage_on_parents(stage_sql, role_sql),
        f"GRANT USAGE ON STAGE {stage_sql} TO ROLE {role_sql};",
        f"-- then paste this statement's output into `snowsage train setup-sql` for the {USER_ARN_PROPERTY} "
        f"and {EXTERNAL_ID_PROPERTY} settings",
        f"DESC INTEGRATION {name};",
    ]


@dataclass(frozen=True)
class IntegrationTrust:
    """Who Snowflake is when it assumes the unload role: the principal and the sts:ExternalId."""

    iam_user_arn: str
    external_id: str

    def to_dict(self) -> dict[str, str]:
        return {USER_ARN_PROPERTY: self.iam_user_arn, EXTERNAL_ID_PROPERTY: self.external_id}


def _cells(line: str) -> list[str]:
    if "|" in line:
        return [c.strip() for c in line.strip().strip("|").split("|")]
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    return [c.strip() for c in next(csv.reader([line]))]


def parse_desc_integration(text: str) -> IntegrationTrust:
    """STORAGE_AWS_IAM_USER_ARN and STORAGE_AWS_EXTERNAL_ID from pasted ``DESC INTEGRATION`` output."""
    value_at = 2  # property, property_type, property_value, property_default
    found: dict[str, str] = {}
    seen: list[str] = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or set(line) <= set("+-|= "):
            continue
        cells = _cells(line)
        lowered = [c.lower() for c in cells]
        if "property_value" in lowered:
            value_at = lowered.index("property_value")
            continue
        prop = cells[0].strip('"').upper()
        seen.append(prop)
        if prop in (USER_ARN_PROPERTY, EXTERNAL_ID_PROPERTY) and len(cells) > value_at:
            found[prop] = cells[value_at].strip('"')
    missing = [p for p in (USER_ARN_PROPERTY, EXTERNAL_ID_PROPERTY) if not found.get(p)]
    if missing:
        shown = ", ".join(seen[:12]) or "nothing"
        raise ExportInputError(
            f"the pasted DESC INTEGRATION output has no {' and no '.join(missing)} value (rows seen: "
            f"{shown}); run DESC INTEGRATION <integration> as the admin and paste its whole output "
            "(text table, CSV or tab-separated, with the property and property_value columns)"
        )
    arn = _checked(
        _USER_ARN,
        found[USER_ARN_PROPERTY],
        USER_ARN_PROPERTY,
        "expected an IAM user ARN (arn:aws:iam::<account>:user/...); paste the property_value column unchanged",
    )
    external_id = _checked(
        _EXTERNAL_ID,
        found[EXTERNAL_ID_PROPERTY],
        EXTERNAL_ID_PROPERTY,
        "expected the external id exactly as DESC INTEGRATION shows it (no spaces); paste it unchanged",
    )
    return IntegrationTrust(iam_user_arn=arn, external_id=external_id)
