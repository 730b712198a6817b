"""The shipped example notebook, executed cell by cell in a real kernel against the sandbox."""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from sandbox.sample_data import COLUMNS
from tests.conftest import REGION, REPO_ROOT
from tests.notebook.conftest import HOUSING_ROWS, Deploy, Deployment, HousingTable

pytestmark = pytest.mark.e2e

NOTEBOOK = REPO_ROOT / "notebooks" / "snowflake_quickstart.ipynb"
CELL_TIMEOUT = 120


def run_notebook(dep: Deployment, tmp_path: Path, **parameters: Any) -> nbformat.NotebookNode:
    """Execute the notebook as a user would, with ``parameters`` injected after the parameters cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nb.cells.insert(
        index + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]})
    )
    # The kernel is the venv's python3 (on the instance it is conda_python3); it gets what the
    # sandbox exports: the settings file, moto as the AWS endpoint, fake credentials, the region.
    env = {
        **os.environ,
        "SNOWSAGE_SETTINGS_FILE": str(dep.settings_file),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "AWS_DEFAULT_REGION": REGION,
    }
    assert env.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"), "moto endpoint not exported"
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env, cwd=str(tmp_path))
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def secret_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_quickstart_runs_and_round_trips_parquet_through_the_bucket(
    deploy: Deploy,
    housing_table: HousingTable,
    aws_environment: dict[str, str],
    private_key_pem: str,
    tmp_path: Path,
) -> None:
    import boto3

    dep = deploy(database=housing_table.database)
    result = f"e2e/{uuid.uuid4().hex[:8]}/housing_sample"
    nb = run_notebook(dep, tmp_path, TABLE=housing_table.table, RESULT_NAME=result)

    # execute() raised if any cell failed, so the notebook's own round-trip asserts held.
    text = outputs_text(nb)
    assert f"{housing_table.table}: {HOUSING_ROWS:,} rows, {len(COLUMNS)} columns" in text
    sampled = re.search(r"sampled ([\d,]+) of ([\d,]+) rows", text)
    assert sampled, text[:2000]
    sampled_rows = int(sampled.group(1).replace(",", ""))
    assert 0 < sampled_rows < HOUSING_ROWS

    key = f"results/{result}.parquet"
    assert f"saved s3://{dep.bucket}/{key}" in text
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=dep.bucket, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == list(COLUMNS)
    assert table.num_rows == sampled_rows

    # Nothing secret reached the notebook's outputs.
    assert "PRIVATE KEY" not in text
    assert not [line for line in secret_lines(private_key_pem) if line in text]


def test_quickstart_without_credentials_stops_at_the_check_with_the_command(
    deploy: Deploy, aws_environment: dict[str, str], tmp_path: Path
) -> None:
    dep = deploy(credentials=False)
    with pytest.raises(CellExecutionError) as err:
        run_notebook(dep, tmp_path)
    message = str(err.value)
    assert "CredentialsNotReady" in message
    assert "`snowsage keypair generate`" in message
    assert "connect()" in message  # it is the connection check cell that stopped, not the import


def test_shipped_notebook_is_clean_and_starts_with_the_import() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == "from snowsage.notebook import connect, query, read_s3, sample, to_s3"
    assert "parameters" in code[1].metadata.get("tags", [])
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs must be cleared"
    assert nb.metadata.kernelspec.name == "snowsage"  # the kernel the lifecycle registers
    sources = "\n".join(c.source for c in code)
    assert not re.search(r"""(query|query_batches)\(\s*f["']""", sources), "no f-string SQL"
    assert NOTEBOOK.stat().st_size < 10_000
