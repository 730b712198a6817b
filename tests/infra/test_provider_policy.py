"""The secure-parameter provider's role and function, as synthesized: exactly what the handler calls,
and the configured key handed to it out of band."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO, Synth

HANDLER = REPO / "lambda" / "secure_parameter" / "handler.py"


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("secure_parameter_handler_infra", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one(s: Synth, type_: str, prefix: str) -> dict[str, Any]:
    found = [v for k, v in s.resources("data", type_).items() if k.startswith(prefix)]
    assert len(found) == 1, f"expected one {type_} named {prefix}*, got {len(found)}"
    return found[0]


def _statements(s: Synth) -> dict[str, dict[str, Any]]:
    policy = _one(s, "AWS::IAM::ManagedPolicy", "SnowflakeProviderHandlerRolePolicy")
    return {st["Sid"]: st for st in policy["Properties"]["PolicyDocument"]["Statement"]}


def _actions(stmt: dict[str, Any]) -> set[str]:
    a = stmt["Action"]
    return {a} if isinstance(a, str) else set(a)


def _as_set(values: Any) -> set[str]:
    return {json.dumps(v, sort_keys=True) for v in (values if isinstance(values, list) else [values])}


def _ssm_calls(path: Path) -> set[str]:
    """IAM actions of every ``ssm.<operation>(...)`` call in the handler's source."""
    calls = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "ssm"
        ):
            calls.add("ssm:" + "".join(part.title() for part in node.func.attr.split("_")))
    return calls


def test_the_role_holds_exactly_the_ssm_actions_the_handler_calls_and_no_tag_actions(nat: Synth) -> None:
    granted = {a for st in _statements(nat).values() for a in _actions(st) if a.startswith("ssm:")}
    called = _ssm_calls(HANDLER)

    assert called, "found no ssm.<operation>() call in the handler; the parser no longer matches it"
    assert not {a for a in granted if "Tag" in a}, f"tag actions granted: {sorted(granted)}"
    assert granted == called


def test_the_function_is_given_the_configured_key_the_resources_name(any_synth: Synth, handler) -> None:
    s = any_synth
    fn = _one(s, "AWS::Lambda::Function", "SnowflakeProviderHandler")
    variables = fn["Properties"]["Environment"]["Variables"]
    keys = {
        json.dumps(r["Properties"]["KmsKeyId"])
        for r in s.resources("data", "Custom::SnowsageSecureParameter").values()
    }

    assert handler.KEY_ENV in variables, f"{handler.KEY_ENV} missing from {sorted(variables)}"
    assert keys == {json.dumps(variables[handler.KEY_ENV])}
    # It is the stack's own customer-managed key, never an alias that could be repointed.
    key_ref = variables[handler.KEY_ENV]["Fn::GetAtt"]
    assert key_ref[1] == "Arn"
    assert s.raw("data")["Resources"][key_ref[0]]["Type"] == "AWS::KMS::Key"


def test_decrypt_under_a_previous_key_is_only_via_ssm_and_only_for_the_credentials(any_synth: Synth) -> None:
    s = any_synth
    by_sid = _statements(s)
    stmt = by_sid["DecryptPreviousKeyViaSsm"]
    credential_arns = by_sid["ManageCredentialParameters"]["Resource"]

    assert _actions(stmt) == {"kms:Decrypt"}
    resource = json.dumps(stmt["Resource"])
    assert re.search(r':kms:us-east-1:", \{"Ref": "AWS::AccountId"\}, ":key/\*"', resource), resource
    assert set(stmt["Condition"]) == {"StringEquals"}
    conditions = stmt["Condition"]["StringEquals"]
    assert set(conditions) == {"kms:ViaService", "kms:EncryptionContext:PARAMETER_ARN"}
    assert conditions["kms:ViaService"] == "ssm.us-east-1.amazonaws.com"
    assert _as_set(conditions["kms:EncryptionContext:PARAMETER_ARN"]) == _as_set(credential_arns)
    # Encrypting stays with the configured key alone.
    others = [st for sid, st in by_sid.items() if sid != "DecryptPreviousKeyViaSsm"]
    assert not [st for st in others if "key/*" in json.dumps(st["Resource"])]
