"""`make notebook` reuses only a kept sandbox it can use, and says why not otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sandbox import demo, notebook_ui


def test_a_kept_sandbox_of_another_env_is_refused_with_what_to_do(tmp_path: Path) -> None:
    running = demo.RunningSandbox(
        workdir=tmp_path,
        pid=1,
        moto_url="http://127.0.0.1:1",
        fakesnow_port=1,
        env_name="staging",
        region=demo.REGION,
    )

    with pytest.raises(notebook_ui.NotebookUIError) as refused:
        notebook_ui.attach(running, io.StringIO())

    assert str(refused.value) == (
        f"make notebook: reusing the kept sandbox failed: {tmp_path / demo.RUNNING_FILE} is for env "
        f"'staging' in {demo.REGION}, not 'sandbox' in {demo.REGION}; stop that sandbox (Ctrl-C) and run again"
    )
