"""The secure-parameter provider as CloudFormation drives it: values survive, keys change, nothing leaks."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from snowsage.settings import PLACEHOLDER

NAME = "/snowsage/dev/private_key"
SECRET = "-----BEGIN " + "PRIVATE KEY-----MIIEvQ-out-of-band-secret-4711"  # split: scanners see no key


def props(key_id: str, **overrides: str) -> dict[str, str]:
    base = {
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:framework-onEvent",
        "ParameterName": NAME,
        "KmsKeyId": key_id,
        "Description": "Snowflake private key (PKCS#8 PEM)",
        "InitialValue": PLACEHOLDER,
        "RemovalPolicy": "retain",
    }
    return {**base, **overrides}


def event(request_type: str, properties: dict[str, str], old: dict[str, str] | None = None, **extra):
    ev = {"RequestType": request_type, "ResourceProperties": properties, "RequestId": "req-1", **extra}
    if old is not None:
        ev["OldResourceProperties"] = old
    return ev


def new_key(aws) -> str:
    return aws.kms.create_key(Description="snowsage test")["KeyMetadata"]["Arn"]


@pytest.fixture
def configure(handler, monkeypatch):
    """Set the key the construct puts in the function's environment; returns it."""

    def use(key: str) -> str:
        monkeypatch.setenv(handler.KEY_ENV, key)
        return key

    return use


def value_of(aws, name: str = NAME) -> str:
    return aws.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def described(aws, name: str = NAME) -> dict:
    found = aws.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )["Parameters"]
    assert found, f"{name} does not exist"
    return found[0]


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "the handler logged nothing; expected action and parameter name"
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info) if record.exc_info else "")
        assert SECRET not in text, f"secret value in log record from {record.name}"


def test_create_makes_a_securestring_under_the_key_and_reports_name_and_arn(
    handler, aws, configure, context, all_logs
):
    key = configure(new_key(aws))
    result = handler.on_event(event("Create", props(key)), context)

    assert result["PhysicalResourceId"] == NAME
    assert result["Data"] == {
        "ParameterName": NAME,
        "ParameterArn": f"arn:aws:ssm:eu-west-1:123456789012:parameter{NAME}",
    }
    meta = described(aws)
    assert meta["Type"] == "SecureString"
    assert meta["KeyId"] == key
    assert value_of(aws) == PLACEHOLDER
    assert any(NAME in r.getMessage() and "Create" in r.getMessage() for r in all_logs.records)


def test_create_when_the_parameter_exists_keeps_its_value(handler, aws, configure, context, all_logs):
    key = configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key)

    result = handler.on_event(event("Create", props(key)), context)

    assert result["PhysicalResourceId"] == NAME
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_create_when_it_exists_under_another_key_reencrypts_and_keeps_the_value(
    handler, aws, configure, context, all_logs
):
    old_key, key = new_key(aws), configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=old_key)

    handler.on_event(event("Create", props(key)), context)

    assert described(aws)["KeyId"] == key
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_create_refuses_a_plain_string_of_that_name_and_leaves_it_alone(
    handler, aws, configure, context, all_logs
):
    key = configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="String")

    with pytest.raises(handler.ProviderError) as err:
        handler.on_event(event("Create", props(key)), context)

    message = str(err.value)
    assert NAME in message and "String" in message and "delete-parameter" in message
    assert SECRET not in message
    assert described(aws)["Type"] == "String"
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_update_never_overwrites_a_value_set_since_creation(handler, aws, configure, context, all_logs):
    key = configure(new_key(aws))
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    changed = props(key, Description="new words", InitialValue="someone-else")
    handler.on_event(event("Update", changed, created, PhysicalResourceId=NAME), context)

    assert value_of(aws) == SECRET
    assert described(aws)["Description"] == "new words"
    assert_no_secret_logged(all_logs)


def test_update_with_a_new_key_reencrypts_the_current_value(handler, aws, configure, context, all_logs):
    key, new = configure(new_key(aws)), new_key(aws)
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    configure(new)  # CloudFormation updates the function before the resources that use it
    handler.on_event(event("Update", props(new), created, PhysicalResourceId=NAME), context)

    assert described(aws)["KeyId"] == new
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_update_with_a_new_name_creates_it_carrying_the_secret_over(
    handler, aws, configure, context, all_logs
):
    key = configure(new_key(aws))
    created = props(key, RemovalPolicy="destroy")
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)
    renamed = props(key, ParameterName="/snowsage/prod/private_key", RemovalPolicy="destroy")

    result = handler.on_event(event("Update", renamed, created, PhysicalResourceId=NAME), context)
    # CloudFormation then deletes the old physical id with the old properties.
    handler.on_event(event("Delete", created, PhysicalResourceId=NAME), context)

    assert result["PhysicalResourceId"] == "/snowsage/prod/private_key"
    assert value_of(aws, "/snowsage/prod/private_key") == SECRET
    assert described(aws, "/snowsage/prod/private_key")["Type"] == "SecureString"
    assert not aws.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [NAME]}]
    )["Parameters"]
    assert_no_secret_logged(all_logs)


def test_update_recreates_a_parameter_deleted_out_of_band(handler, aws, configure, context):
    key = configure(new_key(aws))
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.delete_parameter(Name=NAME)

    handler.on_event(event("Update", created, created, PhysicalResourceId=NAME), context)

    assert value_of(aws) == PLACEHOLDER


def test_delete_with_retain_leaves_the_parameter_and_its_value(handler, aws, configure, context, all_logs):
    key = configure(new_key(aws))
    handler.on_event(event("Create", props(key)), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    result = handler.on_event(event("Delete", props(key), PhysicalResourceId=NAME), context)

    assert result["PhysicalResourceId"] == NAME
    assert value_of(aws) == SECRET
    assert any("retain" in r.getMessage() for r in all_logs.records)
    assert_no_secret_logged(all_logs)


def test_delete_with_destroy_removes_it_and_tolerates_it_being_gone(handler, aws, configure, context):
    key = configure(new_key(aws))
    doomed = props(key, RemovalPolicy="destroy")
    handler.on_event(event("Create", doomed), context)

    handler.on_event(event("Delete", doomed, PhysicalResourceId=NAME), context)
    with pytest.raises(ClientError):
        aws.ssm.get_parameter(Name=NAME)
    # A second delete (retry, or removed by hand) must not fail the stack.
    handler.on_event(event("Delete", doomed, PhysicalResourceId=NAME), context)


def test_rollback_of_a_failed_create_does_not_delete_a_parameter_it_did_not_make(handler, aws, context):
    # No configured key: a Delete never encrypts, so it must not depend on one.
    key = new_key(aws)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="String")
    failed_marker = "AWSCDK::CustomResourceProviderFramework::CREATE_FAILED"

    handler.on_event(event("Delete", props(key, RemovalPolicy="destroy"), PhysicalResourceId=failed_marker))

    assert value_of(aws) == SECRET


def test_unknown_request_type_says_what_was_expected(handler, aws, context):
    with pytest.raises(handler.ProviderError, match=r"'Replace'.*expected Create, Update or Delete"):
        handler.on_event(event("Replace", props(new_key(aws))), context)


@pytest.mark.parametrize(
    ("override", "expected"),
    [({"KmsKeyId": ""}, "KmsKeyId"), ({"RemovalPolicy": "snapshot"}, "'snapshot'.*retain, destroy")],
)
def test_bad_properties_name_the_property_and_the_accepted_values(
    handler, aws, configure, context, override, expected
):
    configure("alias/x")
    with pytest.raises(handler.ProviderError, match=expected):
        handler.on_event(event("Create", props("alias/x", **override)), context)


def test_a_failed_put_never_echoes_the_value_in_the_error(
    handler, aws, configure, context, all_logs, monkeypatch
):
    key, new = new_key(aws), configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key)
    real_client = handler.boto3.client

    def client(service, *args, **kwargs):
        c = real_client(service, *args, **kwargs)

        def refuse(**kw):
            # AWS validation errors quote the offending value; simulate exactly that.
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f"Value '{kw['Value']}' failed"}},
                "PutParameter",
            )

        c.put_parameter = refuse
        return c

    monkeypatch.setattr(handler.boto3, "client", client)
    with pytest.raises(handler.ProviderError) as err:
        handler.on_event(event("Create", props(new)), context)

    assert "ValidationException" in str(err.value) and NAME in str(err.value)
    assert SECRET not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert_no_secret_logged(all_logs)


def test_arn_without_a_lambda_context_comes_from_sts(handler, aws, configure):
    result = handler.on_event(event("Create", props(configure(new_key(aws)), ParameterName="plain-name")))
    assert result["Data"]["ParameterArn"] == "arn:aws:ssm:eu-west-1:123456789012:parameter/plain-name"


def _other_forms(aws, key: str) -> dict[str, str]:
    """Ways an event could name a key that is not the configured one (or not provably so)."""
    key_id = key.rsplit("/", 1)[1]
    aws.kms.create_alias(AliasName="alias/snowsage-points-at-it", TargetKeyId=key_id)
    return {
        "aws-managed": "alias/aws/ssm",
        "another key": new_key(aws),
        # What an alias points to can be changed later, so it is not "the configured key".
        "alias of the configured key": "alias/snowsage-points-at-it",
        "same id, other region": key.replace(":eu-west-1:", ":us-east-1:"),
    }


@pytest.mark.parametrize("request_type", ["Create", "Update"])
@pytest.mark.parametrize(
    "form", ["aws-managed", "another key", "alias of the configured key", "same id, other region"]
)
def test_an_event_naming_another_key_is_refused_and_the_secret_stays_put(
    handler, aws, configure, context, all_logs, request_type, form
):
    key = configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key)
    requested = _other_forms(aws, key)[form]

    with pytest.raises(handler.ProviderError) as err:
        handler.on_event(event(request_type, props(requested), props(key), PhysicalResourceId=NAME), context)

    message = str(err.value)
    assert repr(requested) in message and key in message and handler.KEY_ENV in message
    assert SECRET not in message
    assert described(aws)["KeyId"] == key
    assert value_of(aws) == SECRET
    assert all(SECRET not in r.getMessage() for r in all_logs.records)


def test_the_configured_key_by_its_bare_id_is_accepted_and_used_as_configured(
    handler, aws, configure, context
):
    key = configure(new_key(aws))

    handler.on_event(event("Create", props(key.rsplit("/", 1)[1])), context)

    assert described(aws)["KeyId"] == key
    assert value_of(aws) == PLACEHOLDER


def test_without_a_configured_key_nothing_is_created_and_the_error_names_the_setting(handler, aws, context):
    with pytest.raises(handler.ProviderError, match=handler.KEY_ENV):
        handler.on_event(event("Create", props(new_key(aws))), context)

    assert not aws.ssm.describe_parameters()["Parameters"]


def test_a_delete_naming_another_key_still_applies_its_removal_policy(handler, aws, configure, context):
    key = configure(new_key(aws))
    handler.on_event(event("Create", props(key, RemovalPolicy="destroy")), context)

    handler.on_event(
        event("Delete", props("alias/aws/ssm", RemovalPolicy="destroy"), PhysicalResourceId=NAME)
    )

    assert not aws.ssm.describe_parameters()["Parameters"]


def _refuse_decrypt(handler, monkeypatch, code: str, message: str) -> None:
    real_client = handler.boto3.client

    def client(service, *args, **kwargs):
        c = real_client(service, *args, **kwargs)
        real_get = c.get_parameter

        def get_parameter(**kw):
            if kw.get("WithDecryption"):
                raise ClientError({"Error": {"Code": code, "Message": message}}, "GetParameter")
            return real_get(**kw)

        c.get_parameter = get_parameter
        return c

    monkeypatch.setattr(handler.boto3, "client", client)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("AccessDeniedException", r"kms:Decrypt.*snowsage credentials set.*snowsage keypair generate"),
        ("InvalidKeyId", r"enable it, cancel its deletion.*delete-parameter --name " + NAME),
        ("ThrottlingException", r"retry the deployment"),
    ],
)
def test_a_value_that_cannot_be_read_under_the_previous_key_stops_with_the_fix_and_is_kept(
    handler, aws, configure, context, all_logs, monkeypatch, code, fix
):
    old, key = new_key(aws), new_key(aws)
    created = props(configure(old))
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=old, Overwrite=True)
    _refuse_decrypt(handler, monkeypatch, code, f"not authorized to perform kms:Decrypt on {old}")

    configure(key)
    with pytest.raises(handler.ProviderError, match=fix) as err:
        handler.on_event(event("Update", props(key), created, PhysicalResourceId=NAME), context)

    message = str(err.value)
    assert NAME in message and code in message
    if code != "ThrottlingException":
        assert f"encrypted under key {old}" in message
    assert SECRET not in message
    # Nothing was written: the value and its key are as they were, for a retry after the fix.
    assert described(aws)["KeyId"] == old
    assert value_of(aws) == SECRET
    assert all(SECRET not in r.getMessage() for r in all_logs.records)


def test_a_rename_that_cannot_read_the_old_parameter_names_it_and_its_key(
    handler, aws, configure, context, monkeypatch
):
    old, key = new_key(aws), configure(new_key(aws))
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=old)
    _refuse_decrypt(handler, monkeypatch, "AccessDeniedException", "denied")
    renamed = props(key, ParameterName="/snowsage/prod/private_key")

    with pytest.raises(handler.ProviderError) as err:
        handler.on_event(event("Update", renamed, props(old), PhysicalResourceId=NAME), context)

    assert f"cannot decrypt parameter {NAME}, encrypted under key {old}" in str(err.value)
    assert SECRET not in str(err.value)
    assert not aws.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": ["/snowsage/prod/private_key"]}]
    )["Parameters"]
