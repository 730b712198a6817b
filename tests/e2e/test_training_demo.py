"""`make demo`'s training step: the synthesized pipeline, run here against moto and fakesnow.

The demo run reuses the session's fakesnow server (its HOUSING table stays there, so the train
split can be read back); moto is the sandbox's own and stops with it, so what moto held is checked
through what the run read from it. The broken-reference and skip cases need no deployment.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sandbox import demo, training_demo
from sandbox.training import Executors
from stacks.constructs.training import pipeline_definition as pd
from tests.conftest import ServerProcess
from tests.e2e.conftest import DEMO_GROUP, DemoRun

TRAINING_STEP = "training pipeline (synthesized definition)"


pytestmark = DEMO_GROUP  # the demo run is tests/e2e/conftest.py's, shared with test_sandbox.py


@pytest.fixture(scope="module")
def demo_result(sandbox_demo: DemoRun) -> Any:
    result = sandbox_demo.result
    assert result.ok, f"{result.error}\n--- output\n{sandbox_demo.output[-3000:]}"
    if "training" not in result.facts:
        pytest.skip("the app has no Training stack yet: the demo's training step skipped")
    return result, sandbox_demo.output, sandbox_demo.workdir


@pytest.fixture(scope="module")
def demo_run(demo_result: Any) -> Any:
    result, output, workdir = demo_result
    return result.facts["training"], output, workdir


def _rows(frame: Any) -> Counter[tuple[float, ...]]:
    return Counter(tuple(round(float(v), 6) for v in row) for row in frame.itertuples(index=False))


def test_two_hosts_saw_disjoint_train_rows_covering_the_train_split(
    demo_run: Any, fakesnow_server: ServerProcess
) -> None:
    import pandas as pd_
    import snowflake.connector

    outcome, _, workdir = demo_run
    hosts = outcome.training.hosts
    assert [h.host for h in hosts] == ["algo-1", "algo-2"]
    # What each host read from its own input/data/train directory, as the container would.
    seen = []
    for host in hosts:
        files = sorted(
            (workdir / "training" / "jobs" / outcome.training.job_name / host.host).glob(
                "input/data/train/**/*.parquet"
            )
        )
        assert files, f"{host.host} received no train data"
        seen.append(_rows(pd_.concat([pd_.read_parquet(f) for f in files])))
    assert all(sum(c.values()) > 0 for c in seen)
    # The train split, read again from fakesnow with the query the export recorded in its manifest.
    conn = snowflake.connector.connect(
        account="sandbox", user="t", password="t", host="127.0.0.1", port=fakesnow_server.port,
        protocol="http", database="ANALYTICS", schema="PUBLIC",
    )  # fmt: skip
    try:
        cur = conn.cursor()
        cur.execute(outcome.manifest["queries"]["train"])
        split = _rows(pd_.DataFrame(cur.fetchall()))
    finally:
        conn.close()
    assert (
        sum(seen[0].values()) + sum(seen[1].values()) == sum(split.values()) == outcome.export["train_rows"]
    )
    assert seen[0] + seen[1] == split  # every train row once: no host saw a row the other saw
    assert not set(seen[0]) & set(seen[1])
    assert outcome.export["train_rows"] + outcome.export["validation_rows"] == 20000


def test_the_printed_metric_is_the_training_jobs_final_metric(demo_run: Any) -> None:
    outcome, output, _ = demo_run
    match = re.search(r"gate: (validation:\w+) = (\S+) (<=|>=) threshold (\S+): passed", output)
    assert match, output[-2000:]
    metric, value, _, threshold = match.groups()
    final = outcome.run.step(pd.STEP_TRAIN).properties["FinalMetricDataList"]
    assert float(value) == next(m["Value"] for m in final if m["MetricName"] == metric)
    assert float(threshold) == outcome.run.parameters[pd.PARAM_METRIC_THRESHOLD]
    for host in outcome.training.hosts:
        assert f"{host.host}: {host.rows['train']:,} train rows" in output


def test_a_model_package_is_registered_in_moto(demo_run: Any) -> None:
    outcome, output, _ = demo_run
    listed = {p["ModelPackageArn"]: p for p in outcome.packages_in_moto}
    assert outcome.model_package_arn in listed
    assert listed[outcome.model_package_arn]["ModelApprovalStatus"] == "PendingManualApproval"
    assert f"model package: {outcome.model_package_arn} (PendingManualApproval)" in output
    # moto's CloudFormation skipped the package group: the sandbox created it from the template.
    assert outcome.skipped_by_moto.get("AWS::SageMaker::ModelPackageGroup") == 1
    assert [s.name for s in outcome.run.steps] == [
        pd.STEP_EXPORT, pd.STEP_DATA_CHECK, pd.STEP_TRAIN, pd.STEP_GATE, pd.STEP_REGISTER
    ]  # fmt: skip


def _definition() -> dict[str, Any]:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:snowsage-t-training-export"
    return pd.build_definition(
        pd.PipelineSpec(
            export_function_arn=arn,
            bucket_name="snowsage-t-results",
            image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
            training_role_arn="arn:aws:iam::123456789012:role/training",
            subnet_ids=("subnet-1",),
            security_group_ids=("sg-1",),
            kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
            model_package_group_name="snowsage-t-models",
            objective="regression",
            metric_threshold=1.0,
        )
    )


def test_a_broken_get_reference_fails_the_step_naming_the_reference(tmp_path: Path) -> None:
    broken = "Steps.Export.OutputParameters['train_rowz']"
    text = json.dumps(_definition())
    assert "Steps.Export.OutputParameters['train_rows']" in text
    definition = json.loads(text.replace("Steps.Export.OutputParameters['train_rows']", broken))
    called: list[str] = []

    def never(**kwargs: Any) -> Any:
        called.append(str(kwargs))
        raise AssertionError("no step may run")

    out = io.StringIO()
    sandbox = demo.Sandbox(demo.Options(workdir=tmp_path, out=out))
    with pytest.raises(demo.StepFailed) as failed, sandbox.step(TRAINING_STEP):
        training_demo.run_definition(
            definition,
            executors=Executors(invoke_lambda=never, train=never, register_model=never),
            pipeline_name="snowsage-t-training",
            execution_id="abc123def456",
            region="us-east-1",
            account="123456789012",
        )
    number = demo.STEPS.index(TRAINING_STEP) + 1
    assert str(failed.value).startswith(f"step {number} ({TRAINING_STEP}) failed: ")
    assert broken in str(failed.value)
    assert called == []


def test_without_a_training_stack_the_step_skips_with_its_reason(tmp_path: Path) -> None:
    out = io.StringIO()
    sandbox = demo.Sandbox(demo.Options(workdir=tmp_path, out=out))
    sandbox.cfg = demo.sandbox_config(fakesnow_port=0)
    sandbox.training()  # cdk.out holds no SnowSage-sandbox-Training template
    number = demo.STEPS.index(TRAINING_STEP) + 1
    assert out.getvalue().splitlines()[-1] == (
        f"[{number}/{len(demo.STEPS)}] {TRAINING_STEP}: skipped (the app has no SnowSage-sandbox-Training stack)"
    )
    assert "training" not in sandbox.result.facts


def test_the_cli_starts_a_run_lists_it_and_shows_the_registered_model(demo_result: Any) -> None:
    """What an orchestrator or an operator does against the deployment: `snowsage train start
    --wait`, `train runs` and `train model`, by the Training stack's outputs; the sandbox runs that
    execution's steps and moto reports them (sandbox/moto_server.py's pipeline stand-in)."""
    result, output, _ = demo_result
    number = demo.STEPS.index("snowsage train start, runs, model") + 1
    assert f"[{number}/{len(demo.STEPS)}] snowsage train start, runs, model: ok" in output
    run = result.facts["train_cli"]["started"]["run"]
    assert run["status"] == "Succeeded" and run["steps_unavailable"] is None
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        (name, "Succeeded")
        for name in (pd.STEP_EXPORT, pd.STEP_DATA_CHECK, pd.STEP_TRAIN, pd.STEP_GATE, pd.STEP_REGISTER)
    ]
    metric = run["metric"]
    assert metric["name"] == "validation:rmse" and metric["passed"] is True and metric["value"] > 0
    registered = next(s["detail"] for s in run["steps"] if s["name"] == pd.STEP_REGISTER)
    model = result.facts["train_cli"]["model"]["model_package_arn"]
    assert registered == f"model package {model}"
    assert model != result.facts["training"].model_package_arn  # a run of its own, registered after
    assert f"train model: {model} (PendingManualApproval)" in output


def test_the_training_notebook_trains_loads_the_model_and_predicts_real_prices(
    demo_result: Any, fakesnow_server: ServerProcess
) -> None:
    import nbformat
    import numpy as np
    import snowflake.connector
    import xgboost as xgb

    from snowsage.notebook import sample_sql

    result, output, workdir = demo_result
    number = demo.STEPS.index("training notebook") + 1
    assert f"[{number}/{len(demo.STEPS)}] training notebook: ok" in output
    facts = result.facts["training_notebook"]
    executed = nbformat.read(facts["path"], as_version=4)
    assert executed.metadata.kernelspec.name == "snowsage"
    assert [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"] == []
    # The run went through every step; wait() printed them as the stand-in reported them.
    assert facts["steps"] == " -> ".join(
        f"{n} succeeded"
        for n in (pd.STEP_EXPORT, pd.STEP_DATA_CHECK, pd.STEP_TRAIN, pd.STEP_GATE, pd.STEP_REGISTER)
    )
    waited = "".join(
        str(o.get("text", ""))
        for c in executed.cells
        if c.cell_type == "code" and "wait(run)" in c.source
        for o in c.outputs
    )
    assert (
        f"run {facts['run']}: Succeeded" in waited
        and f"training job pipelines-{facts['run']}-Train" in waited
    )
    assert facts["passed"] is True and facts["value"] <= facts["threshold"]
    params: dict[str, Any] = {}
    exec(next(c.source for c in executed.cells if "parameters" in c.metadata.get("tags", [])), params)  # noqa: S102
    # The numbers are real: the run's own booster (host algo-1's, which it uploaded) on the same
    # seeded sample, read again from fakesnow, gives the same error.
    booster = xgb.Booster()
    booster.load_model(
        str(
            workdir
            / "training"
            / "jobs"
            / f"pipelines-{facts['run']}-Train"
            / "algo-1"
            / "model"
            / "xgboost-model"
        )
    )
    conn = snowflake.connector.connect(
        account="sandbox", user="t", password="t", host="127.0.0.1", port=fakesnow_server.port,
        protocol="http", database="ANALYTICS", schema="PUBLIC",
    )  # fmt: skip
    try:
        frame = (
            conn.cursor()
            .execute(sample_sql(params["TABLE"], params["SAMPLE_PERCENT"], params["SEED"]))
            .fetch_pandas_all()
        )
    finally:
        conn.close()
    assert len(frame) == facts["rows"] > 0
    predicted = booster.predict(xgb.DMatrix(frame[facts["features"]].to_numpy(dtype="float64")))
    rmse = float(np.sqrt(np.mean((predicted - frame[facts["label"]].to_numpy(dtype="float64")) ** 2)))
    assert rmse == pytest.approx(facts["rmse"], rel=1e-9)
    assert 0 < facts["mae"] <= facts["rmse"]
    assert f"RMSE {facts['rmse']:,.0f}, MAE {facts['mae']:,.0f} (PRICE)" in output
