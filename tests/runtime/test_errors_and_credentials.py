"""Unit tests: Snowflake error explanations, load_connection validation, secret-free repr, SSM batching."""

from __future__ import annotations

import pytest

from snowsage import credentials
from snowsage.credentials import (
    ConnectionConfig,
    Endpoint,
    InvalidSetting,
    boto3_fetcher,
    load_connection,
)
from snowsage.diagnostics import ERROR_RULES, SnowflakeErrorSeen, explain_snowflake_error, matching_rule
from tests.conftest import make_settings
from tests.runtime.conftest import PASSPHRASE

CFG = ConnectionConfig(
    env_name="dev",
    auth="keypair",
    account="myorg-acct",
    endpoint=Endpoint("myorg-acct.snowflakecomputing.com", 443, "https"),
    user="SVC",
    role="ANALYST",
    warehouse="WH",
    database="DB",
    schema="PUBLIC",
)
PASSWORD_CFG = ConnectionConfig(**{**CFG.__dict__, "auth": "password"})


WIF_CFG = ConnectionConfig(**{**CFG.__dict__, "auth": "wif", "user": None})

# One example per rule of ERROR_RULES, in the rule's order: (code, message, cfg, what the user must read).
RULE_EXAMPLES = {
    "network_policy": (
        390422,
        "Incoming request with IP/Token 203.0.113.7 is not allowed to access Snowflake.",
        CFG,
        ["network policy", "203.0.113.7", "snowsage network-policy"],
    ),
    "jwt_clock": (394301, "JWT token has expired.", CFG, ["clock"]),
    "jwt_key": (
        390144,
        "JWT token is invalid. [0f2a]",
        CFG,
        ["ALTER USER SVC SET RSA_PUBLIC_KEY", "keypair generate", "does not match the stored private key"],
    ),
    "user_locked": (390102, "User temporarily locked. Try again later.", CFG, ["MINS_TO_UNLOCK = 0"]),
    "user_disabled": (
        250001,
        "User access disabled. Contact your local system administrator.",
        CFG,
        ["DISABLED=FALSE"],
    ),
    "wrong_password": (
        390100,
        "Incorrect username or password was specified.",
        PASSWORD_CFG,
        ["SVC", "TYPE=SERVICE"],
    ),
    "wrong_user": (
        390100,
        "Incorrect username or password was specified.",
        CFG,
        ["user SVC", "check the user name", "snowsage credentials set"],
    ),
    "role_not_granted": (
        390189,
        "Role 'ANALYST' specified in the connect string does not exist or not authorized.",
        CFG,
        ["GRANT ROLE ANALYST TO USER SVC"],
    ),
    "warehouse_not_authorized": (
        390201,
        "The requested warehouse does not exist or not authorized.",
        CFG,
        ["GRANT USAGE ON WAREHOUSE WH TO ROLE ANALYST"],
    ),
    "schema_not_authorized": (
        390201,
        "The requested schema does not exist or not authorized.",
        CFG,
        ["GRANT USAGE ON SCHEMA DB.PUBLIC TO ROLE ANALYST"],
    ),
    "database_not_authorized": (
        390201,
        "The requested database does not exist or not authorized.",
        CFG,
        ["GRANT USAGE ON DATABASE DB TO ROLE ANALYST"],
    ),
    "no_active_warehouse": (
        606,
        "No active warehouse selected in the current session.",
        CFG,
        ["AUTO_RESUME", "WH"],
    ),
    "object_missing": (
        2003,
        "SQL compilation error: Object 'SALES' does not exist or not authorized.",
        CFG,
        ["object does not exist or role ANALYST may not see it", "Object 'SALES'", "grant role ANALYST"],
    ),
    "unknown_account": (
        None,
        "000403: 403 Forbidden: Failed to connect to DB: myorg-acct.snowflakecomputing.com:443.",
        CFG,
        ["does not know account 'myorg-acct'", "orgname-accountname"],
    ),
    "no_answer": (
        250001,
        "Could not connect to Snowflake backend after 2 attempt(s).",
        CFG,
        ["myorg-acct.snowflakecomputing.com during login", "TCP 443"],
    ),
    "workload_identity": (
        None,
        "Failed to get AWS attestation for workload identity federation.",
        WIF_CFG,
        ["Workload identity sign-in failed", "TYPE=SERVICE", "WORKLOAD_IDENTITY"],
    ),
}


def test_every_rule_has_an_example():
    assert list(RULE_EXAMPLES) == [rule.name for rule in ERROR_RULES]


@pytest.mark.parametrize("rule", ERROR_RULES, ids=lambda r: r.name)
def test_no_rule_is_shadowed_by_an_earlier_broader_one(rule):
    code, message, cfg, _ = RULE_EXAMPLES[rule.name]
    first = matching_rule(SnowflakeErrorSeen(code, message, cfg))
    assert first is rule, f"{rule.name}'s example is explained by {first and first.name}"


# More errors a rule must catch besides its example.
MORE_CASES = {
    "jwt_key 394304": (394304, "JWT token is invalid.", CFG, ["does not match the stored private key"])
}


@pytest.mark.parametrize(
    "example", [*RULE_EXAMPLES.values(), *MORE_CASES.values()], ids=[*RULE_EXAMPLES, *MORE_CASES]
)
def test_login_errors_users_meet_get_a_one_sentence_fix(example):
    code, message, cfg, expected = example
    diagnosis = explain_snowflake_error(code, message, cfg)

    for fragment in expected:
        assert fragment in diagnosis
    assert diagnosis.endswith(".") and ". " not in diagnosis.rstrip(".")


def test_jwt_diagnosis_names_the_stored_key_fingerprint(test_key):
    settings = make_settings("dev", "keypair")
    values = _values(settings, user="SVC", private_key=test_key.pem)
    cfg = load_connection(settings, values.get_many)

    diagnosis = explain_snowflake_error(390144, "JWT token is invalid.", cfg)

    assert cfg.public_key_fingerprint and cfg.public_key_fingerprint in diagnosis


def test_unknown_error_keeps_code_and_message():
    diagnosis = explain_snowflake_error(123456, "Something odd happened", CFG, step="query")
    assert "123456" in diagnosis and "Something odd happened" in diagnosis and "query" in diagnosis


class _Values(dict):
    calls = 0

    def get_many(self, names):
        type(self).calls += 1
        return {n: self[n] for n in names if n in self}


def _values(settings, **overrides) -> _Values:
    plain = {"account": "myorg-acct", "role": "R", "warehouse": "WH", "database": "DB", "schema": "S"}
    merged = {**plain, **overrides}
    return _Values({settings.parameters[k]: v for k, v in merged.items() if k in settings.parameters})


def test_load_connection_reads_everything_in_one_fetch_and_defaults_the_host(test_key):
    settings = make_settings("dev", "keypair", overrides=())
    values = _values(
        settings, user="SVC", private_key=test_key.encrypted_pem, private_key_passphrase=PASSPHRASE
    )
    _Values.calls = 0

    cfg = load_connection(settings, values.get_many)

    assert _Values.calls == 1
    kwargs = cfg.connect_kwargs()
    assert kwargs["host"] == "myorg-acct.snowflakecomputing.com"
    assert (kwargs["port"], kwargs["protocol"]) == (443, "https")
    assert isinstance(kwargs["private_key"], bytes)
    assert cfg.endpoint.ocsp_host == "ocsp.snowflakecomputing.com"


def test_privatelink_host_uses_its_own_ocsp_host(test_key):
    settings = make_settings("dev", "keypair", overrides=("host",))
    host = "myorg-acct.privatelink.snowflakecomputing.com"
    cfg = load_connection(settings, _values(settings, user="U", private_key=test_key.pem, host=host).get_many)
    assert cfg.endpoint.ocsp_host == f"ocsp.{host}"


def test_config_repr_and_str_hide_secrets(test_key):
    settings = make_settings("dev", "keypair")
    values = _values(
        settings, user="SVC", private_key=test_key.encrypted_pem, private_key_passphrase=PASSPHRASE
    )
    cfg = load_connection(settings, values.get_many)
    pw_settings = make_settings("dev", "password")
    pw_cfg = load_connection(
        pw_settings, _values(pw_settings, user="SVC", password="hunter2-secret").get_many
    )

    shown = repr(cfg) + str(cfg) + repr(pw_cfg) + str(pw_cfg) + repr(cfg.__dict__) + repr(pw_cfg.__dict__)

    for fragment in test_key.secret_fragments():
        assert fragment not in shown
    assert PASSPHRASE not in shown and "hunter2-secret" not in shown
    assert "<redacted>" in shown and "SVC" in shown


def test_escaped_newlines_in_a_stored_key_are_accepted(test_key):
    settings = make_settings("dev", "keypair")
    escaped = test_key.pem.replace("\n", "\\n")
    cfg = load_connection(settings, _values(settings, user="SVC", private_key=escaped).get_many)
    assert cfg.connect_kwargs()["private_key"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("account", "https://myorg-acct.snowflakecomputing.com", "orgname-accountname"),
        ("port", "https", "use a TCP port"),
        ("protocol", "ftp", "use https"),
    ],
)
def test_bad_settings_name_the_parameter_and_value(test_key, key, value, expected):
    settings = make_settings("dev", "keypair")
    values = _values(settings, user="SVC", private_key=test_key.pem, **{key: value})

    with pytest.raises(InvalidSetting) as err:
        load_connection(settings, values.get_many)

    assert settings.parameters[key] in str(err.value)
    assert value in str(err.value) and expected in str(err.value)


def test_boto3_fetcher_batches_by_ten_and_leaves_missing_names_out():
    class FakeSSM:
        def __init__(self):
            self.calls = []

        def get_parameters(self, Names, WithDecryption):
            assert WithDecryption is True
            self.calls.append(list(Names))
            return {
                "Parameters": [{"Name": n, "Value": f"v{n}"} for n in Names if n != "/missing"],
                "InvalidParameters": [n for n in Names if n == "/missing"],
            }

    ssm = FakeSSM()
    names = [f"/p{i}" for i in range(23)] + ["/missing"]

    values = boto3_fetcher(ssm)(names)

    assert [len(c) for c in ssm.calls] == [10, 10, 4]
    assert values["/p22"] == "v/p22" and "/missing" not in values


def test_password_mode_logs_the_legacy_warning_without_the_password(caplog):
    settings = make_settings("dev", "password")
    cfg = load_connection(settings, _values(settings, user="SVC", password="pw-value-123").get_many)

    assert credentials.LEGACY_SIGNIN_WARNING in cfg.warnings
    assert "TYPE=SERVICE" in caplog.text and "pw-value-123" not in caplog.text


def test_default_timeouts_leave_room_inside_the_60_second_lambda_timeout():
    from snowsage.diagnostics import Timeouts

    t = Timeouts()
    # total budget + the guards' grace (login 2 s, query 1 s, warehouse 1 s) + closing (2 s)
    assert t.total + 2 + 1 + 1 + 2 <= 50
    assert all(getattr(t, step) <= t.total for step in ("login", "query", "warehouse"))
