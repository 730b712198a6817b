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


def test_create_makes_a_securestring_under_the_key_and_reports_name_and_arn(handler, aws, context, all_logs):
    key = new_key(aws)
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


def test_create_when_the_parameter_exists_keeps_its_value(handler, aws, context, all_logs):
    key = new_key(aws)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key)

    result = handler.on_event(event("Create", props(key)), context)

    assert result["PhysicalResourceId"] == NAME
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_create_when_it_exists_under_another_key_reencrypts_and_keeps_the_value(
    handler, aws, context, all_logs
):
    old_key, key = new_key(aws), new_key(aws)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=old_key)

    handler.on_event(event("Create", props(key)), context)

    assert described(aws)["KeyId"] == key
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_create_refuses_a_plain_string_of_that_name_and_leaves_it_alone(handler, aws, context, all_logs):
    key = new_key(aws)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="String")

    with pytest.raises(handler.ProviderError) as err:
        handler.on_event(event("Create", props(key)), context)

    message = str(err.value)
    assert NAME in message and "String" in message and "delete-parameter" in message
    assert SECRET not in message
    assert described(aws)["Type"] == "String"
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_update_never_overwrites_a_value_set_since_creation(handler, aws, context, all_logs):
    key = new_key(aws)
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    changed = props(key, Description="new words", InitialValue="someone-else")
    handler.on_event(event("Update", changed, created, PhysicalResourceId=NAME), context)

    assert value_of(aws) == SECRET
    assert described(aws)["Description"] == "new words"
    assert_no_secret_logged(all_logs)


def test_update_with_a_new_key_reencrypts_the_current_value(handler, aws, context, all_logs):
    key, new = new_key(aws), new_key(aws)
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    handler.on_event(event("Update", props(new), created, PhysicalResourceId=NAME), context)

    assert described(aws)["KeyId"] == new
    assert value_of(aws) == SECRET
    assert_no_secret_logged(all_logs)


def test_update_with_a_new_name_creates_it_carrying_the_secret_over(handler, aws, context, all_logs):
    key = new_key(aws)
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


def test_update_recreates_a_parameter_deleted_out_of_band(handler, aws, context):
    key = new_key(aws)
    created = props(key)
    handler.on_event(event("Create", created), context)
    aws.ssm.delete_parameter(Name=NAME)

    handler.on_event(event("Update", created, created, PhysicalResourceId=NAME), context)

    assert value_of(aws) == PLACEHOLDER


def test_delete_with_retain_leaves_the_parameter_and_its_value(handler, aws, context, all_logs):
    key = new_key(aws)
    handler.on_event(event("Create", props(key)), context)
    aws.ssm.put_parameter(Name=NAME, Value=SECRET, Type="SecureString", KeyId=key, Overwrite=True)

    result = handler.on_event(event("Delete", props(key), PhysicalResourceId=NAME), context)

    assert result["PhysicalResourceId"] == NAME
    assert value_of(aws) == SECRET
    assert any("retain" in r.getMessage() for r in all_logs.records)
    assert_no_secret_logged(all_logs)


def test_delete_with_destroy_removes_it_and_tolerates_it_being_gone(handler, aws, context):
    key = new_key(aws)
    doomed = props(key, RemovalPolicy="destroy")
    handler.on_event(event("Create", doomed), context)

    handler.on_event(event("Delete", doomed, PhysicalResourceId=NAME), context)
    with pytest.raises(ClientError):
        aws.ssm.get_parameter(Name=NAME)
    # A second delete (retry, or removed by hand) must not fail the stack.
    handler.on_event(event("Delete", doomed, PhysicalResourceId=NAME), context)


def test_rollback_of_a_failed_create_does_not_delete_a_parameter_it_did_not_make(handler, aws, context):
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
def test_bad_properties_name_the_property_and_the_accepted_values(handler, aws, context, override, expected):
    with pytest.raises(handler.ProviderError, match=expected):
        handler.on_event(event("Create", props("alias/x", **override)), context)


def test_a_failed_put_never_echoes_the_value_in_the_error(handler, aws, context, all_logs, monkeypatch):
    key, new = new_key(aws), new_key(aws)
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


def test_arn_without_a_lambda_context_comes_from_sts(handler, aws):
    result = handler.on_event(event("Create", props(new_key(aws), ParameterName="plain-name")))
    assert result["Data"]["ParameterArn"] == "arn:aws:ssm:eu-west-1:123456789012:parameter/plain-name"
