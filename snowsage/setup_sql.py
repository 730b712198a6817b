"""SQL the CLI prints for a Snowflake admin to run; every identifier and literal is validated or quoted.

Nothing here talks to AWS or Snowflake, and nothing here ever receives a secret: public keys, role
ARNs and IP addresses are the only values that reach a statement.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

# Snowflake stores unquoted identifiers upper-cased; anything else must be double-quoted and is then
# case-sensitive. https://docs.snowflake.com/en/sql-reference/identifiers-syntax
_UNQUOTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_VPCE_ID = re.compile(r"^vpce-[0-9a-f]{8,17}$")
_MAX_IDENTIFIER = 255

# RSA_PUBLIC_KEY is slot 1, RSA_PUBLIC_KEY_2 is slot 2; DESC USER shows <column>_FP next to each.
SLOT_COLUMNS = {1: "RSA_PUBLIC_KEY", 2: "RSA_PUBLIC_KEY_2"}

# The check function runs under its own IAM role. A user has one default workload identity (the
# WORKLOAD_IDENTITY property, used for the notebook role); the check role is a second, named one.
CHECK_WORKLOAD_IDENTITY = "SNOWSAGE_CHECK"


class SqlValueError(ValueError):
    """A value that cannot be put into a statement safely; the message names it and the fix."""


def identifier(value: str, what: str) -> str:
    """An identifier as Snowflake should see it: bare when that is unambiguous, else double-quoted."""
    if not value or not value.strip():
        raise SqlValueError(
            f"the {what} name is empty; set it in cdk.json and redeploy, or pass it as an option"
        )
    if len(value) > _MAX_IDENTIFIER:
        raise SqlValueError(f"the {what} name is {len(value)} characters; Snowflake allows {_MAX_IDENTIFIER}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SqlValueError(f"the {what} name {value!r} contains control characters; use a plain name")
    if _UNQUOTED.match(value):
        return value
    return '"' + value.replace('"', '""') + '"'


def qualified(*parts_and_what: tuple[str, str]) -> str:
    return ".".join(identifier(v, w) for v, w in parts_and_what)


def literal(value: str) -> str:
    """A single-quoted string literal (quotes doubled, backslashes escaped)."""
    if any(ord(c) < 32 for c in value):
        raise SqlValueError("a string value contains control characters")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def role_arn(value: str, what: str) -> str:
    if not _IAM_ROLE_ARN.match(value or ""):
        raise SqlValueError(
            f"the {what} is {value!r}, not an IAM role ARN (arn:aws:iam::<account>:role/<name>); "
            "redeploy the Notebook stack so its outputs are regenerated"
        )
    return value


def slot_column(slot: int) -> str:
    try:
        return SLOT_COLUMNS[slot]
    except KeyError:
        raise SqlValueError(f"key slot {slot} does not exist; Snowflake has slots 1 and 2") from None


def setup_sql(
    *,
    auth: str,
    user: str,
    role: str,
    warehouse: str,
    database: str,
    schema: str,
    create_table: bool = False,
    notebook_role_arn: str | None = None,
    check_role_arn: str | None = None,
) -> str:
    u = identifier(user, "service user")
    r = identifier(role, "role")
    wh = identifier(warehouse, "warehouse")
    db = identifier(database, "database")
    sch = f"{db}.{identifier(schema, 'schema')}"
    lines = [
        "-- snowsage: Snowflake objects for the SageMaker notebook and its connectivity check.",
        "-- Run as SECURITYADMIN (or a role with CREATE ROLE, CREATE USER and MANAGE GRANTS).",
        "USE ROLE SECURITYADMIN;",
        "",
        f"CREATE ROLE IF NOT EXISTS {r} COMMENT = 'snowsage notebook access';",
        f"GRANT ROLE {r} TO ROLE SYSADMIN;",
        f"GRANT USAGE ON WAREHOUSE {wh} TO ROLE {r};",
        f"GRANT USAGE ON DATABASE {db} TO ROLE {r};",
        f"GRANT USAGE ON SCHEMA {sch} TO ROLE {r};",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {sch} TO ROLE {r};",
        f"GRANT SELECT ON FUTURE TABLES IN SCHEMA {sch} TO ROLE {r};",
    ]
    if create_table:
        lines.append(f"GRANT CREATE TABLE ON SCHEMA {sch} TO ROLE {r};")
    else:
        lines.append(
            f"-- Read-only. To let notebooks write tables: GRANT CREATE TABLE ON SCHEMA {sch} TO ROLE {r};"
        )
    lines.append("")
    # SERVICE users cannot log in with a password; LEGACY_SERVICE is Snowflake's (deprecated) type
    # for services that still must.
    user_type = "LEGACY_SERVICE" if auth == "password" else "SERVICE"
    lines += [
        f"CREATE USER IF NOT EXISTS {u}",
        f"  TYPE = {user_type}",
        f"  DEFAULT_ROLE = {r}",
        f"  DEFAULT_WAREHOUSE = {wh}",
        "  COMMENT = 'snowsage service user';",
        f"GRANT ROLE {r} TO USER {u};",
        "",
    ]
    if auth == "keypair":
        lines += [
            "-- Key-pair authentication: the operator runs `snowsage keypair generate`, which stores the",
            "-- private key in SSM and prints the statement to run next:",
            f"--   ALTER USER {u} SET RSA_PUBLIC_KEY = '<public key printed by snowsage>';",
        ]
    elif auth == "password":
        lines += [
            "-- Password authentication (TYPE = LEGACY_SERVICE; prefer keypair or wif where you can).",
            "-- Set the password yourself, interactively, and hand it to the operator out of band:",
            f"--   ALTER USER {u} SET PASSWORD = '<choose it here>';",
            f"-- The operator stores it with: snowsage credentials set --user {user} --password-stdin",
        ]
    elif auth == "wif":
        nb = literal(role_arn(notebook_role_arn or "", "notebook role ARN"))
        ck = literal(role_arn(check_role_arn or "", "check function role ARN"))
        lines += [
            "-- Workload identity federation: no secret exists anywhere. A user has exactly one default",
            "-- workload identity; it trusts the notebook's IAM role. The check function runs under a",
            "-- different role, registered as a second, named workload identity "
            f"({CHECK_WORKLOAD_IDENTITY}).",
            f"ALTER USER {u} SET WORKLOAD_IDENTITY = (TYPE = AWS ARN = {nb});",
            f"ALTER USER {u} ADD WORKLOAD IDENTITY {CHECK_WORKLOAD_IDENTITY} TYPE = AWS ARN = {ck};",
            "-- If ADD says the identity exists, it is already registered. If your account does not",
            "-- support named workload identities, only the notebook can connect and `snowsage check`",
            "-- reports an authentication failure for the check function.",
            f"SHOW USER WORKLOAD IDENTITY AUTHENTICATION METHODS FOR USER {u};",
        ]
    else:
        raise SqlValueError(f"auth mode {auth!r} is not keypair, password or wif")
    return "\n".join(lines) + "\n"


def set_public_key_sql(user: str, slot: int, public_key_body: str) -> str:
    return (
        f"ALTER USER {identifier(user, 'service user')} SET {slot_column(slot)} = {literal(public_key_body)};"
    )


def unset_public_key_sql(user: str, slot: int) -> str:
    return f"ALTER USER {identifier(user, 'service user')} UNSET {slot_column(slot)};"


def describe_user_sql(user: str) -> str:
    return f"DESC USER {identifier(user, 'service user')};"


def register_key_sql(user: str, slot: int, public_key_body: str, fingerprint: str) -> str:
    """The ALTER USER that puts a public key in a slot, and how the admin sees that it took."""
    return (
        f"{set_public_key_sql(user, slot, public_key_body)}\n"
        f"-- Check: {describe_user_sql(user)} must show {slot_column(slot)}_FP = {fingerprint}\n"
    )


def retire_key_sql(user: str, slot: int, retired_fingerprint: str | None, live_fingerprint: str) -> str:
    return (
        f"{unset_public_key_sql(user, slot)}\n"
        f"-- Retires the old key {retired_fingerprint or '(fingerprint unknown)'}; "
        f"the live key {live_fingerprint} stays in {slot_column(3 - slot)}.\n"
    )


# What the Network stack's NatElasticIps output holds when there are no NAT gateways (an empty
# output value is not allowed by CloudFormation).
NO_NAT_ADDRESSES = "none"


def parse_ipv4_list(raw: str | None) -> list[str]:
    """NatElasticIps as the Network stack writes it: comma-separated, "none" (or absent) in
    PrivateLink mode."""
    if (raw or "").strip().lower() == NO_NAT_ADDRESSES:
        return []
    ips = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ips.append(str(ipaddress.IPv4Address(part)))
        except ValueError:
            raise SqlValueError(
                f"NatElasticIps holds {part!r}, which is not an IPv4 address; redeploy the Network stack"
            ) from None
    return ips


def policy_names(env_name: str) -> tuple[str, str]:
    """The network rule's and policy's names: one pair per deployment, the same in every command."""
    tag = re.sub(r"[^A-Za-z0-9_]", "_", env_name).upper()
    return f"SNOWSAGE_{tag}_NOTEBOOK", f"SNOWSAGE_{tag}_POLICY"


def no_nat_policy_comment(network_stack: str) -> str:
    """What snowflake-setup ends with in PrivateLink mode, instead of a network policy."""
    return (
        f"-- No network policy: {network_stack} has no NAT Elastic IPs, so the notebook\n"
        "-- reaches Snowflake through PrivateLink with no internet egress. To also limit the user's\n"
        "-- logins to that VPC endpoint, run `snowsage network-policy` (it explains --vpce-id).\n"
    )


def policy_left_out_comment(ips: Sequence[str]) -> str:
    return (
        "-- Network policy left out (--no-network-policy): the user can log in from any address, so\n"
        "-- a stolen key works anywhere. `snowsage network-policy` prints the SQL that limits logins\n"
        f"-- to the NAT gateways' addresses ({', '.join(ips)}).\n"
    )


def find_vpce_comment(network_stack: str, region: str, vpc_id: str | None) -> str:
    """How to find the VPC endpoint a PrivateLink network rule names."""
    return (
        f"-- {network_stack} has no NAT Elastic IPs: the notebook reaches Snowflake through\n"
        "-- PrivateLink, so Snowflake sees the VPC endpoint, not a public address. List that endpoint:\n"
        f"--   aws ec2 describe-vpc-endpoints --region {region} "
        f"--filters Name=vpc-id,Values={vpc_id or '<VpcId>'} "
        "--query 'VpcEndpoints[].[VpcEndpointId,ServiceName]'\n"
        "-- and run `snowsage network-policy --vpce-id vpce-...` to get a rule of TYPE = AWSVPCEID.\n"
    )


def network_policy_sql(
    *,
    user: str,
    rule_database: str,
    rule_schema: str,
    rule_name: str,
    policy_name: str,
    ips: Sequence[str] = (),
    vpce_ids: Sequence[str] = (),
) -> str:
    if bool(ips) == bool(vpce_ids):
        raise SqlValueError("a network rule needs either NAT IP addresses or VPC endpoint IDs")
    for v in vpce_ids:
        if not _VPCE_ID.match(v):
            raise SqlValueError(f"{v!r} is not a VPC endpoint ID (vpce-0123456789abcdef0)")
    values = [str(ipaddress.IPv4Address(i)) for i in ips] if ips else list(vpce_ids)
    rule_type = "IPV4" if ips else "AWSVPCEID"
    rule = qualified(
        (rule_database, "network rule database"),
        (rule_schema, "network rule schema"),
        (rule_name, "network rule"),
    )
    policy = identifier(policy_name, "network policy")
    u = identifier(user, "service user")
    value_list = ", ".join(literal(v) for v in values)
    what = "the notebook VPC's NAT gateway addresses" if ips else "the notebook VPC's Snowflake endpoint"
    return "\n".join(
        [
            f"-- snowsage: allow {u} to log in only from {what}.",
            "-- Run as SECURITYADMIN (network policies) with USAGE on the rule's schema.",
            "USE ROLE SECURITYADMIN;",
            f"CREATE NETWORK RULE IF NOT EXISTS {rule}",
            f"  MODE = INGRESS TYPE = {rule_type} VALUE_LIST = ({value_list});",
            "-- Re-running after the addresses change updates the rule in place:",
            f"ALTER NETWORK RULE {rule} SET VALUE_LIST = ({value_list});",
            f"CREATE NETWORK POLICY IF NOT EXISTS {policy}",
            f"  ALLOWED_NETWORK_RULE_LIST = ({literal(rule)})",
            "  COMMENT = 'snowsage service user';",
            f"ALTER USER {u} SET NETWORK_POLICY = {policy};",
            "",
        ]
    )
