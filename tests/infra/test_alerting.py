"""Alerts reach someone: every alarm may publish to the topic and use its key, dead letters may be
written to the encrypted queue, and a monitor that stops running raises an alarm of its own."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from snowsage import metrics

from .conftest import Synth, synthesize

ACCOUNT = {"Ref": "AWS::AccountId"}


def _one(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


# What the Training stack adds to the same topic and key for its failure rule and alarms
# (tests/infra/test_training_constructs.py and test_training_config.py cover those).
TRAINING_SIDS = frozenset(
    {
        "AllowTrainingFailureRuleToPublish",
        "AllowTrainingAlarmsToPublish",
        "AllowEventBridgeToPublishToEncryptedTopic",
        "AllowTrainingAlarmsToPublishToEncryptedTopic",
    }
)


def _statements_for(document: dict[str, Any], service: str) -> list[dict[str, Any]]:
    """The check's statements for ``service`` (the Training stack's are left out)."""
    return [
        st
        for st in document["Statement"]
        if st.get("Principal") == {"Service": service} and st.get("Sid") not in TRAINING_SIDS
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _key_policy(s: Synth) -> dict[str, Any]:
    return _one(s.resources("data", "AWS::KMS::Key"))[1]["Properties"]["KeyPolicy"]


def _arn_text(value: Any) -> str:
    """An ARN built with Fn::Join, with the account written as <account>."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "<account>" if p == ACCOUNT else json.dumps(p) for p in parts)


def _alarms(s: Synth) -> dict[str, dict[str, Any]]:
    return s.resources("notebook", "AWS::CloudWatch::Alarm")


def _topic_ref(s: Synth) -> dict[str, str]:
    return {"Ref": _one(s.resources("notebook", "AWS::SNS::Topic"))[0]}


# ------------------------------------------------------------------ who may publish, with which key


def test_topic_policy_lets_exactly_the_check_alarms_publish(any_synth: Synth) -> None:
    s = any_synth
    _, policy = _one(s.resources("notebook", "AWS::SNS::TopicPolicy"))
    document = policy["Properties"]["PolicyDocument"]
    (allow,) = _statements_for(document, "cloudwatch.amazonaws.com")
    assert allow["Effect"] == "Allow" and _actions(allow) == {"sns:Publish"}
    assert allow["Resource"] == _topic_ref(s)
    sources = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sorted(json.dumps(a) for a in sources) == sorted(
        json.dumps({"Fn::GetAtt": [k, "Arn"]}) for k in _alarms(s)
    )
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    # The TLS-only deny stays.
    assert any(
        st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for st in document["Statement"]
    )


def test_key_lets_cloudwatch_encrypt_for_the_check_alarms_only(any_synth: Synth) -> None:
    s = any_synth
    (grant,) = _statements_for(_key_policy(s), "cloudwatch.amazonaws.com")
    assert grant["Effect"] == "Allow"
    assert _actions(grant) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    pattern = _arn_text(grant["Condition"]["ArnLike"]["aws:SourceArn"])
    assert pattern == f"arn:aws:cloudwatch:us-east-1:<account>:alarm:snowsage-{s.cfg.env_name}-check-*"
    # The pattern is written in the Data stack, the names in the Notebook stack: if they drift
    # apart, CloudWatch cannot encrypt and every notification is dropped without an error.
    names = [a["Properties"]["AlarmName"] for a in _alarms(s).values()]
    assert names and all(fnmatch.fnmatchcase(n, pattern.rsplit(":", 1)[1]) for n in names), names
    # The topic is encrypted with exactly this key.
    _, topic = _one(s.resources("notebook", "AWS::SNS::Topic"))
    assert "EncryptionKey" in json.dumps(topic["Properties"]["KmsMasterKeyId"])


def test_key_lets_eventbridge_write_dead_letters_into_the_check_queue_only(any_synth: Synth) -> None:
    s = any_synth
    (grant,) = _statements_for(_key_policy(s), "events.amazonaws.com")
    assert grant["Effect"] == "Allow"
    assert _actions(grant) == {"kms:Decrypt", "kms:GenerateDataKey"}
    condition = grant["Condition"]
    assert list(condition) == ["StringEquals"]
    queue_arn = _arn_text(condition["StringEquals"]["kms:EncryptionContext:aws:sqs:arn"])
    queue_name = f"snowsage-{s.cfg.env_name}-check-dead-letters"
    assert queue_arn == f"arn:aws:sqs:us-east-1:<account>:{queue_name}"
    # ...and that is the queue the schedule dead-letters into, encrypted with this key.
    queue_id, queue = _one(s.resources("notebook", "AWS::SQS::Queue"))
    assert queue["Properties"]["QueueName"] == queue_name
    assert "EncryptionKey" in json.dumps(queue["Properties"]["KmsMasterKeyId"])
    _, rule = _one(s.resources("notebook", "AWS::Events::Rule"))
    (target,) = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}


def test_queue_policy_lets_only_the_schedule_rule_send(any_synth: Synth) -> None:
    s = any_synth
    rule_id, _ = _one(s.resources("notebook", "AWS::Events::Rule"))
    _, policy = _one(s.resources("notebook", "AWS::SQS::QueuePolicy"))
    (allow,) = _statements_for(policy["Properties"]["PolicyDocument"], "events.amazonaws.com")
    assert allow["Effect"] == "Allow" and _actions(allow) == {"sqs:SendMessage"}
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}


# ------------------------------------------------------------------ what each alarm watches


def _expected_alarms(s: Synth) -> dict[str, dict[str, Any]]:
    env = s.cfg.env_name
    service = [{"Name": "service", "Value": f"snowsage-{env}-check"}]
    at_least_one = {"Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold"}
    expected: dict[str, dict[str, Any]] = {
        f"snowsage-{env}-check-failed": {
            "Namespace": "SnowSage",
            "MetricName": "CheckFailed",
            "Dimensions": service,
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **at_least_one,
        },
        f"snowsage-{env}-check-errors": {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": _function_id(s)}}],
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **at_least_one,
        },
        f"snowsage-{env}-check-dead-letters": {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [_queue_id(s), "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **at_least_one,
        },
    }
    if s.cfg.check_period_seconds:
        expected[f"snowsage-{env}-check-heartbeat"] = {
            "Namespace": "SnowSage",
            "MetricName": "CheckOk",
            "Dimensions": service,
            "Statistic": "Sum",
            "Period": s.cfg.check_period_seconds,
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
        }
    return expected


def _function_id(s: Synth) -> str:
    return next(k for k in s.resources("notebook", "AWS::Lambda::Function") if k.startswith("CheckFunction"))


def _queue_id(s: Synth) -> str:
    return _one(s.resources("notebook", "AWS::SQS::Queue"))[0]


def _assert_alarms(s: Synth) -> None:
    expected = _expected_alarms(s)
    actual = {a["Properties"]["AlarmName"]: a["Properties"] for a in _alarms(s).values()}
    assert sorted(actual) == sorted(expected)
    topic = [_topic_ref(s)]
    for name, want in expected.items():
        props = actual[name]
        got = {k: props.get(k) for k in want}
        assert got == want, name
        # Every alarm, in and out of alarm, tells the same topic (and so alarm_email).
        assert props["AlarmActions"] == topic and props["OKActions"] == topic, name
        assert props.get("ActionsEnabled", True) is True, name


def test_each_alarm_watches_its_metric_and_tells_the_topic(any_synth: Synth) -> None:
    _assert_alarms(any_synth)


def test_heartbeat_period_follows_the_schedule(any_synth: Synth) -> None:
    s = any_synth
    heartbeat = next(
        a["Properties"] for a in _alarms(s).values() if a["Properties"]["MetricName"] == metrics.CHECK_OK
    )
    _, rule = _one(s.resources("notebook", "AWS::Events::Rule"))
    period = {"rate(1 hour)": 3600, "rate(30 minutes)": 1800}[rule["Properties"]["ScheduleExpression"]]
    assert heartbeat["Period"] == period
    # CloudWatch refuses a window longer than a day for periods under an hour, 7 days otherwise.
    window = heartbeat["Period"] * heartbeat["EvaluationPeriods"]
    assert window <= (86_400 if heartbeat["Period"] < 3600 else 604_800)


@pytest.fixture(scope="module")
def unscheduled(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-nosched"), check_schedule="off", env_name="nosched")


def test_without_a_schedule_there_is_no_rule_and_no_heartbeat(unscheduled: Synth) -> None:
    s = unscheduled
    assert not s.resources("notebook", "AWS::Events::Rule")
    _assert_alarms(s)
    assert metrics.CHECK_OK not in {a["Properties"]["MetricName"] for a in _alarms(s).values()}
