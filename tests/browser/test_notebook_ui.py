"""`make notebook` in a browser: the quickstart runs through JupyterLab's UI in the kernel the real
lifecycle scripts built, and a cell that raises is reported with its error.

One test, one deployment, one JupyterLab, one browser (a deployment costs a minute; pytest-xdist
would give a second test its own). The test deploys with the demo's steps (reusing the session's
fakesnow), keeps it up the way ``python -m sandbox --keep-running`` does (its state file), and runs
``python -m sandbox.notebook_ui`` itself: the command a user runs, on its reuse path, to Ctrl-C.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import nbformat
import pandas as pd
import pytest

from sandbox import demo, notebook_ui, servers
from sandbox.sample_data import COLUMNS
from snowsage.notebook import KERNEL_DISPLAY_NAME
from tests.conftest import ServerProcess

from . import driver

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / ".sandbox" / "notebook-ui.png"
RESULT_KEY = "results/quickstart/housing_sample.parquet"
URL_LINE = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([\w-]+)$")
RAISES = "raises.ipynb"


def _read_url(proc: subprocess.Popen[str], timeout: float = 420.0) -> tuple[str, list[str]]:
    """The URL line `make notebook` prints, and every line before it."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if URL_LINE.match(line):
            return line, seen
    proc.kill()
    proc.wait(timeout=30)
    err = proc.stderr.read() if proc.stderr else ""
    pytest.fail("make notebook printed no URL:\n" + "\n".join(seen[-20:]) + "\n--- stderr\n" + err[-3000:])


def _raising_notebook(home: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "snowsage",
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell("# this cell raises\ntotal = 1 / 0"),
        nbformat.v4.new_code_cell("print('never runs')"),
    ]
    nbformat.write(nb, home / RAISES)


def _processes_under(folder: Path) -> dict[str, bytes]:
    """The live processes whose command line points into ``folder`` (JupyterLab rooted there, the
    kernels running its env): pid and command line -> command line and environment."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        text = cmd.replace(b"\0", b" ").decode(errors="replace")
        if str(folder) in text:
            found[f"{proc.name}: {text[:200]}"] = cmd + b"\0" + environ
    return found


def test_the_quickstart_runs_through_jupyterlab_and_a_raising_cell_is_reported(
    tmp_path: Path, fakesnow_server: ServerProcess
) -> None:
    try:
        driver.browser_paths()  # before a minute of deployment: the one missing piece, named
    except driver.BrowserMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    workdir = tmp_path / "sandbox"
    deployment = notebook_ui.deploy(workdir, io.StringIO(), fakesnow_port=fakesnow_server.port)
    ui = None
    try:
        # Kept the way `python -m sandbox --keep-running` keeps it: make notebook reuses it.
        (workdir / demo.RUNNING_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "moto_url": deployment.moto_url,
                    "fakesnow_port": fakesnow_server.port,
                    "env_name": demo.ENV_NAME,
                    "region": demo.REGION,
                }
            )
        )
        ui = subprocess.Popen(
            [sys.executable, "-m", "sandbox.notebook_ui", "--workdir", str(workdir)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        url, printed = _read_url(ui)
        port = int(URL_LINE.match(url).group(1))  # type: ignore[union-attr]
        assert sum("http" in line for line in printed) == 1, printed  # one URL, the one to open
        assert any("using the sandbox kept running" in line for line in printed), printed
        home = notebook_ui.paths(workdir).home
        # The token is required: without it the server answers 403.
        assert servers.answers_http(f"http://127.0.0.1:{port}/api/status")
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5)

        with driver.browser(tmp_path / "browser") as chromium:
            lab = driver.Lab(chromium, url)
            lab.open()
            run = lab.run_all(notebook_ui.QUICKSTART, KERNEL_DISPLAY_NAME)
            table_cell = next(
                (c for c in run.cells if ["", *COLUMNS] in c.table_headers and "sampled" in c.text), None
            )
            if table_cell is not None:
                lab.scroll_to(table_cell)
            lab.screenshot(SCREENSHOT)
            run.check()  # every code cell ran, none shows an error (else: the cells and their errors)
            assert run.kernel == KERNEL_DISPLAY_NAME
            assert table_cell is not None, [c.table_headers for c in run.cells]

            # The Parquet object the notebook wrote, read back from moto's S3.
            s3 = deployment.client("s3")
            body = s3.get_object(Bucket=deployment.bucket, Key=RESULT_KEY)["Body"].read()
            frame = pd.read_parquet(io.BytesIO(body))
            assert list(frame.columns) == list(COLUMNS)
            sampled = re.search(r"sampled ([\d,]+) of 20,000 rows", table_cell.text)
            assert sampled and len(frame) == int(sampled.group(1).replace(",", "")), table_cell.text

            # The same session, a notebook whose second cell raises: that cell and its error are reported.
            _raising_notebook(home)
            failing = lab.run_all(RAISES, KERNEL_DISPLAY_NAME)
            assert [c.index for c in failing.failed] == [1]
            assert [c.index for c in failing.not_run] == [2]
            with pytest.raises(driver.LabError) as raised:
                failing.check()
            report = str(raised.value)
            assert "cell 1 ('# this cell raises'): ZeroDivisionError: division by zero" in report, report
            assert "not run: cells 2" in report

        # The token is in no command line and no environment of JupyterLab or its kernels.
        served = _processes_under(home)
        assert any("ipykernel_launcher" in p for p in served) and any("jupyterlab" in p for p in served), (
            served
        )
        token = URL_LINE.match(url).group(2).encode()  # type: ignore[union-attr]
        assert [p for p, seen in served.items() if token in seen] == []

        ui.send_signal(signal.SIGINT)  # Ctrl-C
        ui.wait(timeout=60)
        err = ui.stderr.read() if ui.stderr else ""
        assert ui.returncode == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
        assert not servers.answers_http(f"http://127.0.0.1:{port}/api/status")  # JupyterLab stopped
        assert list(_processes_under(home)) == []  # and its kernels (they run the env in the home)
        assert servers.answers_http(deployment.moto_url + "/moto-api/")  # a reused sandbox stays up
    finally:
        if ui is not None and ui.poll() is None:
            ui.kill()
            ui.wait(timeout=30)
        (workdir / demo.RUNNING_FILE).unlink(missing_ok=True)
        deployment.stop()
