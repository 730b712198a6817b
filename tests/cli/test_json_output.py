"""--json is a contract for scripts: each command prints one JSON document with the keys it has
always had, nothing else on stdout and nothing on stderr, and the same exit status as without it."""

from __future__ import annotations

import json

import pytest

from snowsage import keys
from tests.cli.test_check_notebook import FAILED_REPORT, OK_REPORT
from tests.cli.test_train import DESC_TEXT, deploy_training  # noqa: F401 (a fixture, used below)


def _doc(r, exit_code: int = 0) -> dict:
    assert r.exit_code == exit_code, (r.stdout, r.stderr)
    assert r.stderr == ""  # guidance is for people: silent with --json
    return json.loads(r.stdout)


def test_keypair_commands(deploy, run) -> None:
    d = deploy()
    doc = _doc(run("--env", d.env, "--json", "keypair", "generate"))
    assert set(doc) == {"parameter", "user", "slot", "fingerprint", "sql", "out"}
    assert doc["parameter"] == d.parameters["private_key"] and doc["out"] is None

    doc = _doc(run("--env", d.env, "--json", "keypair", "rotate", "--no-wait"))
    assert set(doc) == {"user", "slot", "fingerprint", "sql"} and doc["slot"] == 2
    assert doc["fingerprint"] == keys.fingerprint(keys.load_private_key(d.value("private_key")))

    doc = _doc(run("--env", d.env, "--json", "keypair", "rotate", "--finish"))
    assert doc == {"user": d.user, "unset_slot": 1, "sql": doc["sql"]}
    assert doc["sql"].startswith(f"ALTER USER {d.user} UNSET RSA_PUBLIC_KEY;")


def test_credentials_commands(deploy, run, tmp_path) -> None:
    d = deploy()
    doc = _doc(run("--env", d.env, "--json", "credentials", "status"), exit_code=1)
    assert set(doc) == {"auth", "parameters", "complete"} and doc["complete"] is False
    assert set(doc["parameters"][0]) == {"key", "parameter", "state", "last_modified"}

    path = tmp_path / "k.p8"
    key = keys.generate_private_key()
    path.write_text(keys.private_key_to_pem(key))
    doc = _doc(
        run("--env", d.env, "--json", "credentials", "set", "--user", "SVC", "--private-key-file", str(path))
    )
    assert set(doc) == {"user", "parameters", "fingerprint", "sql"}
    assert doc["parameters"] == {
        k: d.parameters[k] for k in ("private_key", "private_key_passphrase", "user")
    }

    doc = _doc(run("--env", d.env, "--json", "credentials", "status"))
    assert doc["complete"] is True and doc["fingerprint"] == keys.fingerprint(key)
    assert doc["slot"] == "unknown"  # credentials set cannot know which slot the admin used
    assert set(doc) == {"auth", "parameters", "complete", "fingerprint", "slot"}


def test_password_credentials_set(deploy, run) -> None:
    d = deploy(auth="password")
    r = run(
        "--env", d.env, "--json", "credentials", "set", "--user", "PW", "--password-stdin", input="pw-1\n"
    )
    assert _doc(r) == {
        "user": "PW",
        "parameters": {"password": d.parameters["password"], "user": d.parameters["user"]},
    }


@pytest.mark.parametrize(("report", "exit_code"), [(OK_REPORT, 0), (FAILED_REPORT, 1)])
def test_check(deploy, run, aws_hooks, report, exit_code) -> None:
    d = deploy()
    aws_hooks.invoke_returns(report)
    doc = _doc(run("--env", d.env, "--json", "check"), exit_code)
    assert {k: doc[k] for k in ("ok", "status", "diagnosis")} == {
        k: report[k] for k in ("ok", "status", "diagnosis")
    }
    assert [(s["name"], s["ok"], s["ms"]) for s in doc["steps"]] == [
        (s["name"], s["ok"], s["ms"]) for s in report["steps"]
    ]


def test_notebook_commands(deploy, run, aws_hooks) -> None:
    d = deploy()
    doc = _doc(run("--env", d.env, "--json", "notebook", "status"))
    assert set(doc) == {"notebook", "status", "instance_type", "url", "failure_reason", "last_modified"}
    assert doc["notebook"] == d.notebook and doc["instance_type"] == "ml.t3.medium"

    aws_hooks.respond("sagemaker.CreatePresignedNotebookInstanceUrl", {"AuthorizedUrl": "https://x.example/"})
    assert _doc(run("--env", d.env, "--json", "notebook", "url")) == {
        "notebook": d.notebook,
        "url": "https://x.example/",
    }

    doc = _doc(run("--env", d.env, "--json", "notebook", "stop"))
    assert doc == {"notebook": d.notebook, "status": "InService", "changed": True}
    doc = _doc(run("--env", d.env, "--json", "notebook", "stop"))
    assert doc["changed"] is False


def test_network_policy(deploy, run) -> None:
    d = deploy()
    doc = _doc(run("--env", d.env, "--json", "network-policy"))
    assert set(doc) == {"mode", "values", "sql"} and doc["mode"] == "nat"
    assert doc["values"] == ["203.0.113.10", "198.51.100.7"]

    d = deploy(nat_ips=None)
    doc = _doc(run("--env", d.env, "--json", "network-policy"))
    assert doc == {
        "mode": "privatelink",
        "vpc_id": "vpc-0abc1234",
        "sql": None,
        "explanation": doc["explanation"],
    }
    doc = _doc(run("--env", d.env, "--json", "network-policy", "--vpce-id", "vpce-0123456789abcdef0"))
    assert doc["mode"] == "privatelink" and doc["values"] == ["vpce-0123456789abcdef0"]


def test_train_commands(deploy_training, run) -> None:  # noqa: F811 (the imported fixture)
    t = deploy_training()
    doc = _doc(run("--env", t.env, "--json", "train", "setup-sql"))
    assert set(doc) == {"exporter", "role", "source", "integration", "stage", "sql"}
    assert doc["exporter"] == "client" and doc["role"] == "SNOWSAGE_ROLE" and doc["integration"] is None

    doc = _doc(
        run("--env", t.env, "--json", "train", "setup-sql", "--desc-integration", "-", input=DESC_TEXT)
    )
    assert set(doc) == {"settings", "context_args", "deploy"}
    assert set(doc["settings"]) == {"training_storage_aws_iam_user_arn", "training_storage_aws_external_id"}

    doc = _doc(run("--env", t.env, "--json", "train", "runs"))
    assert doc == {"pipeline": t.pipeline, "runs": []}

    doc = _doc(run("--env", t.env, "--json", "train", "start", "--param", "InstanceCount=1"))
    assert doc == {
        "pipeline": t.pipeline,
        "execution_id": doc["execution_id"],
        "execution_arn": doc["execution_arn"],
        "parameters": {"InstanceCount": "1"},
        "run": None,
    }
    assert doc["execution_arn"].endswith(f"/execution/{doc['execution_id']}")

    runs = _doc(run("--env", t.env, "--json", "train", "runs"))["runs"]
    assert [set(x) for x in runs] == [
        {"execution_id", "execution_arn", "status", "started", "failure_reason"}
    ]

    status = _doc(run("--env", t.env, "--json", "train", "status", doc["execution_id"]))
    assert set(status) == {
        "pipeline",
        "execution_id",
        "execution_arn",
        "status",
        "failure_reason",
        "failed_step",
        "started",
        "last_modified",
        "parameters",
        "steps",
        "steps_unavailable",
        "metric",
    }
    assert set(status["metric"]) == {"name", "value", "threshold", "comparison", "passed"}

    t.sagemaker().create_model_package(
        ModelPackageGroupName=t.group,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "x", "ModelDataUrl": "s3://b/m.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    doc = _doc(run("--env", t.env, "--json", "train", "model"))
    assert set(doc) == {
        "group",
        "model_package_arn",
        "version",
        "approval_status",
        "created",
        "metric",
        "metric_value",
        "threshold",
        "pipeline_execution_id",
        "training_job",
        "model_data_url",
    }
    assert doc["approval_status"] == "PendingManualApproval" and doc["model_data_url"] == "s3://b/m.tar.gz"
