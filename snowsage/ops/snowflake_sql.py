"""The SQL a Snowflake admin runs: the role, grants and service user, and the network policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from snowsage import setup_sql as sql
from snowsage.ops.deployment import OptionConflict, service_user
from snowsage.stack_outputs import Deployment, ParameterValue

# What snowflake-setup did about the network policy: added it, left it out as asked, or found no
# NAT addresses to limit logins to (PrivateLink).
PolicyChoice = Literal["added", "left_out", "no_nat"]


@dataclass(frozen=True)
class SetupRequest:
    user: str | None
    create_table: bool
    network_policy: bool


@dataclass(frozen=True)
class SetupSql:
    auth: str
    user: str
    sql: str
    policy: PolicyChoice
    network_stack: str
    nat_ips: tuple[str, ...]


@dataclass(frozen=True)
class NetworkPolicyRequest:
    user: str | None
    rule_database: str | None
    rule_schema: str | None
    vpce_ids: tuple[str, ...]


@dataclass(frozen=True)
class NetworkPolicy:
    """The policy's SQL; in PrivateLink mode without --vpce-id, ``sql`` is None and
    ``explanation`` says how to find the endpoint."""

    mode: Literal["nat", "privatelink"]
    values: tuple[str, ...]
    sql: str | None
    vpc_id: str | None = None
    explanation: str | None = None


def setup(dep: Deployment, req: SetupRequest) -> SetupSql:
    settings = dep.settings()
    plain = dep.require_parameters(
        {k: settings.parameters[k] for k in ("role", "warehouse", "database", "schema")}
    )
    user = service_user(dep, settings, req.user)
    arns: dict[str, str | None] = {}
    if settings.auth == "wif":
        arns = {
            "notebook_role_arn": dep.output("Notebook", "NotebookRoleArn"),
            "check_role_arn": dep.output("Notebook", "CheckFunctionRoleArn"),
        }
    text = sql.setup_sql(
        auth=settings.auth,
        user=user,
        role=plain["role"].value,
        warehouse=plain["warehouse"].value,
        database=plain["database"].value,
        schema=plain["schema"].value,
        create_table=req.create_table,
        **arns,
    )
    ips = sql.parse_ipv4_list(dep.output("Network", "NatElasticIps", required=False))
    network = dep.stack_name("Network")
    policy: PolicyChoice
    if not ips:
        policy, tail = "no_nat", sql.no_nat_policy_comment(network)
    elif not req.network_policy:
        policy, tail = "left_out", sql.policy_left_out_comment(ips)
    else:
        policy, tail = "added", _policy_sql(dep, user, plain, ips=ips)
    return SetupSql(settings.auth, user, text + "\n" + tail, policy, network, tuple(ips))


def network_policy(dep: Deployment, req: NetworkPolicyRequest) -> NetworkPolicy:
    ips = sql.parse_ipv4_list(dep.output("Network", "NatElasticIps", required=False))
    vpc = dep.output("Network", "VpcId", required=False)
    settings = dep.settings()
    user = service_user(dep, settings, req.user)
    plain: dict[str, ParameterValue] = {}
    if not req.rule_database or not req.rule_schema:
        plain = dep.require_parameters({k: settings.parameters[k] for k in ("database", "schema")})
    if not ips and not req.vpce_ids:
        text = sql.find_vpce_comment(dep.stack_name("Network"), dep.region, vpc)
        return NetworkPolicy("privatelink", (), None, vpc_id=vpc, explanation=text)
    if ips and req.vpce_ids:
        raise OptionConflict("this deployment uses NAT gateways; --vpce-id applies only in PrivateLink mode")
    text = _policy_sql(
        dep,
        user,
        plain,
        ips=ips,
        vpce_ids=req.vpce_ids,
        rule_database=req.rule_database,
        rule_schema=req.rule_schema,
    )
    return NetworkPolicy("nat" if ips else "privatelink", tuple(ips or req.vpce_ids), text)


def _policy_sql(
    dep: Deployment,
    user: str,
    plain: Mapping[str, ParameterValue],
    *,
    ips: list[str],
    vpce_ids: tuple[str, ...] = (),
    rule_database: str | None = None,
    rule_schema: str | None = None,
) -> str:
    rule_name, policy_name = sql.policy_names(dep.env_name)
    return sql.network_policy_sql(
        user=user,
        rule_database=rule_database or plain["database"].value,
        rule_schema=rule_schema or plain["schema"].value,
        rule_name=rule_name,
        policy_name=policy_name,
        ips=ips,
        vpce_ids=vpce_ids,
    )
