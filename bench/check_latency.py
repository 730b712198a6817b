"""The connectivity check against fakesnow, parameters in moto: cold vs warm invocation.

lambda/connectivity_check/handler.py with SNOWSAGE_SETTINGS set (as tests/runtime/test_handler.py
does), key-pair auth with an encrypted key in SecureString parameters. Each repetition is a fresh
process (bench/_check_worker.py): cold = loading the handler module + the first invocation
(parameter fetch + connect + queries); warm = the second invocation in the same process, with the
parameters cached by Powertools (the connection is still opened again: each check logs in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import REPO_ROOT, Metric, Result, aws_env, fakesnow_server, median, moto_server

NAME = "check_latency"
TITLE = "Connectivity check latency: cold vs warm invocation"
DEFAULT_REPETITIONS = 5
REGION = "us-east-1"
PASSPHRASE = "bench passphrase, not a secret"  # noqa: S105


def run(repetitions: int = DEFAULT_REPETITIONS) -> Result:
    import boto3

    from snowsage import keys
    from tests.conftest import make_settings, put_parameters, sandbox_values

    runs: list[dict] = []
    with moto_server() as moto, fakesnow_server() as fakesnow, tempfile.TemporaryDirectory() as tmp:
        env = aws_env(moto.url, REGION)
        ssm = boto3.client(
            "ssm",
            endpoint_url=moto.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        )
        settings = make_settings("bench", "keypair")
        pem = keys.private_key_to_pem(keys.generate_private_key(), PASSPHRASE)
        put_parameters(
            ssm,
            settings,
            sandbox_values(fakesnow, user="BENCH_SVC", private_key=pem, private_key_passphrase=PASSPHRASE),
        )
        env.update(
            SNOWSAGE_SETTINGS=settings.to_json(),
            POWERTOOLS_SERVICE_NAME="snowsage-bench-check",
            POWERTOOLS_METRICS_NAMESPACE="SnowSageBench",
        )
        for rep in range(repetitions):
            out = Path(tmp) / f"run-{rep}.json"
            subprocess.run(
                [sys.executable, "-m", "bench._check_worker", str(out)],
                cwd=REPO_ROOT,
                env=env,
                check=True,
                timeout=300,
                capture_output=True,
            )
            result = json.loads(out.read_text())
            if result["statuses"] != ["ok", "ok"]:
                raise RuntimeError(f"the check did not pass against the sandbox: {result}")
            runs.append(result)

    cold = [r["import_s"] + r["first_s"] for r in runs]
    warm = [r["second_s"] for r in runs]
    first_only = [r["first_s"] for r in runs]
    steps_cold = {k: median([r["steps_ms"][0][k] for r in runs]) for k in runs[0]["steps_ms"][0]}
    steps_warm = {k: median([r["steps_ms"][1][k] for r in runs]) for k in runs[0]["steps_ms"][1]}
    return Result(
        summary="baseline = cold (fresh process: import handler + first invocation); ours = warm (second "
        "invocation in the same process, parameters cached); both against fakesnow with parameters in moto",
        metrics=[
            Metric("invocation latency", "s", cold, warm, "cold (import + 1st)", "warm (2nd)"),
            Metric(
                "invocation latency, excluding the import",
                "s",
                first_only,
                warm,
                "1st invocation",
                "2nd invocation",
            ),
            Metric("handler module import", "s", [r["import_s"] for r in runs], [], "cold import", "—"),
        ],
        notes=[
            "No target for this one: it documents what a scheduled check costs cold and warm.",
            f"Median step times in ms, first invocation: {steps_cold}; second: {steps_warm}.",
            f"The handler's import runs with this venv's bytecode cache (see lambda_bundle for a no-.pyc cold "
            f"import); {os.cpu_count()} cores, servers on loopback, so network latency is near zero here: "
            "on Lambda the parameter fetch and the login add real round trips.",
        ],
    )
