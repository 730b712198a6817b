"""Which kernel to pick: the helper's messages name the `snowsage` kernel the lifecycle registers,
and the example notebooks ask for it by the same name."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import snowsage.notebook as nb
from tests.conftest import REPO_ROOT
from tests.notebook.conftest import Deploy

LIFECYCLE = REPO_ROOT / "notebook_lifecycle"


def in_kernel_env(monkeypatch: pytest.MonkeyPatch, settings_file: Path) -> Path:
    """Pretend this process is the kernel's python: sys.prefix is an env beside the settings."""
    env = settings_file.parent / nb.KERNEL_ENVS_NAME / "0123456789abcdef"
    env.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(env))
    return env


def test_another_kernel_without_the_connector_is_told_which_kernel_to_pick(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    with pytest.raises(nb.InstallFailed) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "Kernel > Change kernel > Python 3 (Snowflake)" in message
    assert sys.prefix in message  # which kernel this one is
    assert "conda_python3" not in message


def test_the_snowsage_kernel_missing_the_connector_says_restart_the_instance(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    in_kernel_env(monkeypatch, dep.settings_file)
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    with pytest.raises(nb.InstallFailed) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "'Python 3 (Snowflake)' kernel cannot import snowflake.connector" in message
    assert "stop and start the notebook instance, which rebuilds it" in message
    assert "Change kernel" not in message  # it is the right kernel already


def test_still_installing_names_the_kernel_and_only_another_kernel_is_told_to_switch(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    dep.set_install_status("running", "building the snowsage kernel env")
    with pytest.raises(nb.InstallNotFinished) as err:
        nb.connect(dep.settings_file)
    assert "builds the 'Python 3 (Snowflake)' kernel's environment again" in str(err.value)
    assert "re-run this cell in the 'Python 3 (Snowflake)' kernel (Kernel > Change kernel" in str(err.value)

    in_kernel_env(monkeypatch, dep.settings_file)
    with pytest.raises(nb.InstallNotFinished) as err:
        nb.connect(dep.settings_file)
    assert "wait a minute and re-run this cell; if" in str(err.value)
    assert "Change kernel" not in str(err.value)


@pytest.mark.parametrize("notebook", sorted((REPO_ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_example_notebooks_ask_for_the_kernel_the_lifecycle_registers(notebook: Path) -> None:
    spec = json.loads(notebook.read_text())["metadata"]["kernelspec"]
    assert spec == {"display_name": nb.KERNEL_DISPLAY_NAME, "language": "python", "name": nb.KERNEL_NAME}
    on_start = (LIFECYCLE / "on_start.sh").read_text()
    registered = re.search(r'KERNELS_DIR/([a-z0-9_-]+)"', on_start)
    assert registered and registered.group(1) == nb.KERNEL_NAME
    assert f'"display_name":"{nb.KERNEL_DISPLAY_NAME}"' in on_start
    assert f'"$STATE_DIR/{nb.KERNEL_ENVS_NAME}"' in (LIFECYCLE / "install_wheels.sh").read_text()
