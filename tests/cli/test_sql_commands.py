"""snowflake-setup and network-policy print SQL built from the deployment's outputs and parameters."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import ACCOUNT, USER


def test_setup_sql_for_keypair_creates_role_service_user_and_grants(deploy, run) -> None:
    d = deploy(auth="keypair")
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "CREATE ROLE IF NOT EXISTS SNOWSAGE_ROLE" in out
    assert f"CREATE USER IF NOT EXISTS {USER}\n  TYPE = SERVICE\n  DEFAULT_ROLE = SNOWSAGE_ROLE" in out
    for grant in (
        "GRANT USAGE ON WAREHOUSE ANALYST_WH TO ROLE SNOWSAGE_ROLE;",
        "GRANT USAGE ON DATABASE ANALYTICS TO ROLE SNOWSAGE_ROLE;",
        "GRANT USAGE ON SCHEMA ANALYTICS.PUBLIC TO ROLE SNOWSAGE_ROLE;",
        "GRANT SELECT ON ALL TABLES IN SCHEMA ANALYTICS.PUBLIC TO ROLE SNOWSAGE_ROLE;",
        "GRANT SELECT ON FUTURE TABLES IN SCHEMA ANALYTICS.PUBLIC TO ROLE SNOWSAGE_ROLE;",
        f"GRANT ROLE SNOWSAGE_ROLE TO USER {USER};",
    ):
        assert grant in out
    assert "\nGRANT CREATE TABLE" not in out  # read-only unless asked
    assert "snowsage keypair generate" in out
    assert "WORKLOAD_IDENTITY" not in out


def test_setup_sql_can_grant_create_table_and_quotes_odd_names(deploy, run) -> None:
    d = deploy(database="sales-db")
    r = run("--env", d.env, "snowflake-setup", "--create-table")
    assert r.exit_code == 0, r.stderr
    assert 'GRANT CREATE TABLE ON SCHEMA "sales-db".PUBLIC TO ROLE SNOWSAGE_ROLE;' in r.stdout


def test_setup_sql_for_wif_trusts_both_roles(deploy, run) -> None:
    d = deploy(auth="wif")
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    nb = f"arn:aws:iam::{ACCOUNT}:role/snowsage-{d.env}-notebook"
    ck = f"arn:aws:iam::{ACCOUNT}:role/snowsage-{d.env}-check"
    assert f"ALTER USER {USER} SET WORKLOAD_IDENTITY = (TYPE = AWS ARN = '{nb}');" in r.stdout
    assert f"ALTER USER {USER} ADD WORKLOAD IDENTITY SNOWSAGE_CHECK TYPE = AWS ARN = '{ck}';" in r.stdout
    assert "TYPE = SERVICE" in r.stdout


def test_setup_sql_for_password_uses_legacy_service_and_no_password(deploy, run) -> None:
    d = deploy(auth="password")
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    assert "TYPE = LEGACY_SERVICE" in r.stdout  # SERVICE users cannot log in with a password
    assert "--password-stdin" in r.stdout


def test_setup_sql_json(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "--json", "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["user"] == USER and "CREATE ROLE" in doc["sql"]


def test_setup_sql_needs_a_user_name(deploy, run) -> None:
    d = deploy(auth="wif", settings_user="")
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 1
    assert "--user" in r.stderr
    r = run("--env", d.env, "snowflake-setup", "--user", "OTHER_SVC")
    assert r.exit_code == 0 and "CREATE USER IF NOT EXISTS OTHER_SVC" in r.stdout


def test_network_policy_lists_the_nat_ips(deploy, run) -> None:
    d = deploy(nat_ips="203.0.113.10,198.51.100.7")
    r = run("--env", d.env, "network-policy")
    assert r.exit_code == 0, r.stderr
    rule = f"ANALYTICS.PUBLIC.SNOWSAGE_{d.env.upper()}_NOTEBOOK"
    assert f"CREATE NETWORK RULE IF NOT EXISTS {rule}" in r.stdout
    assert "MODE = INGRESS TYPE = IPV4 VALUE_LIST = ('203.0.113.10', '198.51.100.7');" in r.stdout
    assert f"ALLOWED_NETWORK_RULE_LIST = ('{rule}')" in r.stdout
    assert f"ALTER USER {USER} SET NETWORK_POLICY = SNOWSAGE_{d.env.upper()}_POLICY;" in r.stdout


def test_network_policy_in_privatelink_mode_explains_the_endpoint(deploy, run) -> None:
    d = deploy(nat_ips=None)
    r = run("--env", d.env, "network-policy")
    assert r.exit_code == 0, r.stderr
    assert "PrivateLink" in r.stdout and "vpc-0abc1234" in r.stdout and "--vpce-id" in r.stdout
    assert "CREATE NETWORK RULE" not in r.stdout
    r = run("--env", d.env, "network-policy", "--vpce-id", "vpce-0123456789abcdef0")
    assert r.exit_code == 0, r.stderr
    assert "TYPE = AWSVPCEID VALUE_LIST = ('vpce-0123456789abcdef0')" in r.stdout


def test_setup_sql_limits_logins_to_the_nat_addresses_by_default(deploy, run) -> None:
    d = deploy(nat_ips="203.0.113.10,198.51.100.7")
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    rule = f"ANALYTICS.PUBLIC.SNOWSAGE_{d.env.upper()}_NOTEBOOK"
    policy = f"SNOWSAGE_{d.env.upper()}_POLICY"
    assert f"CREATE NETWORK RULE IF NOT EXISTS {rule}" in out
    assert "MODE = INGRESS TYPE = IPV4 VALUE_LIST = ('203.0.113.10', '198.51.100.7');" in out
    attach = f"ALTER USER {USER} SET NETWORK_POLICY = {policy};"
    assert attach in out
    assert out.index(f"CREATE USER IF NOT EXISTS {USER}") < out.index(attach)  # the user exists by then
    assert "203.0.113.10" in r.stderr and "--no-network-policy" in r.stderr
    # the same names as `snowsage network-policy`, so running both never makes a second policy
    assert attach in run("--env", d.env, "network-policy").stdout


def test_setup_sql_without_the_network_policy_says_it_was_left_out(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "snowflake-setup", "--no-network-policy")
    assert r.exit_code == 0, r.stderr
    assert "CREATE NETWORK RULE" not in r.stdout and "SET NETWORK_POLICY" not in r.stdout
    assert "-- Network policy left out (--no-network-policy)" in r.stdout
    assert "`snowsage network-policy`" in r.stdout


@pytest.mark.parametrize("nat_ips", [None, "none"], ids=["no-output", "stack-says-none"])
def test_setup_sql_in_privatelink_mode_explains_why_there_is_no_network_policy(deploy, run, nat_ips) -> None:
    d = deploy(nat_ips=nat_ips)  # the Network stack writes "none" when there are no NAT gateways
    assert run("--env", d.env, "network-policy").exit_code == 0
    r = run("--env", d.env, "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    assert "CREATE NETWORK RULE" not in r.stdout and "SET NETWORK_POLICY" not in r.stdout
    assert f"-- No network policy: SnowSage-{d.env}-Network has no NAT Elastic IPs" in r.stdout
    assert "--vpce-id" in r.stdout and "No network policy" in r.stderr


def test_setup_sql_json_keeps_its_keys_and_carries_the_policy(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "--json", "snowflake-setup")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"auth", "user", "sql"}
    assert "CREATE NETWORK POLICY IF NOT EXISTS" in doc["sql"] and r.stderr == ""


def test_network_policy_refuses_vpce_ids_with_nat_gateways_as_a_usage_error(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "network-policy", "--vpce-id", "vpce-0123456789abcdef0")
    assert r.exit_code == 2 and r.stdout == ""
    assert "Usage: snowsage network-policy [OPTIONS]" in r.stderr
    assert "Error: this deployment uses NAT gateways; --vpce-id applies only in PrivateLink mode" in r.stderr
