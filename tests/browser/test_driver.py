"""The browser test's preconditions fail with the one thing to do, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import driver


def test_a_missing_browser_names_the_install_command_and_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(driver.BROWSER_ENV, str(tmp_path / "no-chromium"))

    with pytest.raises(driver.BrowserMissing) as missing:
        driver.browser_paths()

    message = str(missing.value)
    assert f"no executable at {tmp_path / 'no-chromium'} (${driver.BROWSER_ENV})" in message
    assert "`apt-get install chromium chromium-driver`" in message
    assert driver.DRIVER_ENV in message


def test_a_driver_that_is_not_executable_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    plain = tmp_path / "chromedriver"
    plain.write_text("not a program")
    monkeypatch.setenv(driver.BROWSER_ENV, str(browser))
    monkeypatch.setenv(driver.DRIVER_ENV, str(plain))

    with pytest.raises(
        driver.BrowserMissing, match=r"no executable at .*chromedriver \(\$SNOWSAGE_CHROMEDRIVER\)"
    ):
        driver.browser_paths()
