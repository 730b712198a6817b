"""Drive a JupyterLab the way a user does: Chromium (Selenium, the system browser and driver), the
file browser, the Run menu, and what the page shows afterwards.

``browser()`` starts one headless Chromium; ``Lab(driver, url)`` opens JupyterLab with its token;
``Lab.run_all(name)`` opens a notebook from the file browser, runs Run -> Run All Cells and returns a
``NotebookRun`` read from the page: each code cell's prompt, first source line and error text, the
kernel's name, the tables. Nothing is read from the .ipynb file or the server's API.

The browser is $SNOWSAGE_BROWSER (default /usr/bin/chromium), the driver $SNOWSAGE_CHROMEDRIVER
(default /usr/bin/chromedriver), given to Selenium explicitly so Selenium Manager downloads nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BROWSER_ENV, DRIVER_ENV = "SNOWSAGE_BROWSER", "SNOWSAGE_CHROMEDRIVER"
DEFAULT_BROWSER, DEFAULT_DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver"
# Headless in a container on a closed network: no sandbox (root), no GPU, no background requests
# (without these, the browser's own connections are refused and it stalls).
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1400,1000",
)
STDERR_MIME = "application/vnd.jupyter.stderr"  # how JupyterLab renders an error (and stderr)


class BrowserMissing(RuntimeError):
    pass


class LabError(AssertionError):
    """What the page showed was not what a user expects; the message says what it showed."""


def browser_paths() -> tuple[Path, Path]:
    """The browser and its driver; BrowserMissing names the install command or the variables."""
    found = []
    for var, default in ((BROWSER_ENV, DEFAULT_BROWSER), (DRIVER_ENV, DEFAULT_DRIVER)):
        value = os.environ.get(var) or default
        path = Path(value) if "/" in value else Path(shutil.which(value) or value)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrowserMissing(
                f"no executable at {path} (${var}): `{INSTALL_HINT}`, or set "
                f"{BROWSER_ENV} and {DRIVER_ENV} to a Chrome or Chromium and its chromedriver"
            )
        found.append(path)
    return found[0], found[1]


@contextlib.contextmanager
def browser(log_dir: Path) -> Iterator[object]:
    """One headless Chromium with a fresh profile; quit (and its profile removed) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, chromedriver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    profile = tempfile.mkdtemp(prefix="snowsage-chromium-")
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    log_dir.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=str(chromedriver), log_output=str(log_dir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class CodeCell:
    index: int  # 0-based, among all cells of the notebook (markdown included)
    first_line: str
    prompt: str  # "[3]:", "[*]:" while running, "[ ]:" never run
    errors: list[str] = field(default_factory=list)  # the text of each error output
    table_headers: list[list[str]] = field(default_factory=list)  # each HTML table's column names
    text: str = ""  # everything its outputs show, as text

    @property
    def count(self) -> int | None:
        m = re.search(r"\[(\d+)\]", self.prompt)
        return int(m.group(1)) if m else None

    def describe(self) -> str:
        last = (
            next((ln for ln in reversed(self.errors[0].splitlines()) if ln.strip()), "")
            if self.errors
            else ""
        )
        return f"cell {self.index} ({self.first_line!r}): {last or self.prompt}"


@dataclass
class NotebookRun:
    name: str
    kernel: str  # the kernel name the notebook's toolbar shows
    cells: list[CodeCell]
    seconds: float

    @property
    def failed(self) -> list[CodeCell]:
        return [c for c in self.cells if c.errors]

    @property
    def not_run(self) -> list[CodeCell]:
        return [c for c in self.cells if c.count is None]

    def report(self) -> str:
        """One line per failed or unrun cell: what a user scrolling the notebook would see."""
        lines = [f"{self.name} in {self.kernel!r}: " + c.describe() for c in self.failed]
        if self.not_run:
            lines.append(f"{self.name}: not run: cells {', '.join(str(c.index) for c in self.not_run)}")
        return "\n".join(lines)

    def check(self) -> None:
        """LabError with the failed cells and their errors unless every code cell ran cleanly."""
        if self.failed or self.not_run:
            raise LabError(self.report())


_READ_CELLS = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return null;
const text = (el) => el ? el.textContent : '';
const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
return {
  kernel: text(panel.querySelector('.jp-Toolbar-kernelName')).trim(),
  cells: cells.map((cell, index) => ({
    index,
    code: cell.classList.contains('jp-CodeCell'),
    first_line: text(cell.querySelector('.jp-InputArea-editor .cm-line')),
    prompt: text(cell.querySelector('.jp-InputPrompt')).trim(),
    text: [...cell.querySelectorAll('.jp-OutputArea-output')].map(text).join('\\n'),
    errors: [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="MIME"]')].map(text),
    tables: [...cell.querySelectorAll('.jp-OutputArea-output table')].map(
      (t) => [...t.querySelectorAll('thead tr:first-child th')].map((th) => th.textContent.trim())),
  })),
};
""".replace("MIME", STDERR_MIME)


class Lab:
    """One JupyterLab page in one browser."""

    def __init__(self, driver: object, url: str, timeout: float = 60.0) -> None:
        self.d: object = driver
        self.url = url
        self.timeout = timeout

    def _wait(self, what: str, condition: object, timeout: float | None = None) -> object:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.d, timeout or self.timeout, poll_frequency=0.25).until(condition)  # type: ignore[arg-type]
        except TimeoutException:
            raise LabError(f"JupyterLab did not show {what} within {timeout or self.timeout:g} s") from None

    def _find(self, what: str, xpath: str) -> object:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self._wait(what, ec.element_to_be_clickable((By.XPATH, xpath)))

    def open(self) -> None:
        """The URL with its token: JupyterLab's file browser, no login page."""
        self.d.get(self.url)  # type: ignore[attr-defined]
        self._find("its file browser", "//*[contains(@class,'jp-DirListing-content')]")

    def open_notebook(self, name: str) -> None:
        """Double-click ``name`` in the file browser (refreshed first: the file may be new)."""
        from selenium.webdriver.common.action_chains import ActionChains

        self._find("the file browser's refresh button", "//*[@data-command='filebrowser:refresh']").click()  # type: ignore[attr-defined]
        item = self._find(
            f"{name} in the file browser",
            f"//li[contains(@class,'jp-DirListing-item')][.//span[@class='jp-DirListing-itemText']/span[text()='{name}']]",
        )
        ActionChains(self.d).double_click(item).perform()  # type: ignore[arg-type]
        self._find(f"the {name} tab", f"//li[contains(@class,'lm-TabBar-tab')][.//div[text()='{name}']]")
        self._wait(f"{name}'s cells", lambda d: (self.read_cells() or {}).get("cells"))

    def wait_for_kernel(self, display_name: str, timeout: float = 120.0) -> None:
        """The toolbar names ``display_name`` and the kernel is idle: started and ready."""

        def ready(d: object) -> bool:
            state = self.read_cells() or {}
            return state.get("kernel") == display_name and self.kernel_status() == "idle"

        try:
            self._wait(f"the {display_name!r} kernel idle", ready, timeout)
        except LabError:
            shown = (self.read_cells() or {}).get("kernel")
            raise LabError(
                f"the notebook's kernel is {shown!r} ({self.kernel_status()}), not {display_name!r} idle"
                f" after {timeout:g} s"
            ) from None

    def kernel_status(self) -> str:
        """The toolbar's execution indicator: idle, busy, starting, ..."""
        return str(
            self.d.execute_script(  # type: ignore[attr-defined]
                "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
                "const e = p && p.querySelector('.jp-Notebook-ExecutionIndicator');"
                "return e ? e.getAttribute('data-status') : '';"
            )
        )

    def run_all_cells(self) -> None:
        """Run -> Run All Cells, from the menu bar."""
        self._find("the Run menu", "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]").click()  # type: ignore[attr-defined]
        self._find(
            "Run All Cells in the Run menu",
            "//li[contains(@class,'lm-Menu-item')][div[contains(@class,'lm-Menu-itemLabel')][text()='Run All Cells']]",
        ).click()  # type: ignore[attr-defined]

    def read_cells(self) -> dict | None:
        return self.d.execute_script(_READ_CELLS)  # type: ignore[attr-defined,no-any-return]

    def run_all(self, name: str, kernel: str, timeout: float = 300.0) -> NotebookRun:
        """Open ``name``, wait for ``kernel``, Run All Cells, wait until it is done; what the page shows."""
        self.open_notebook(name)
        self.wait_for_kernel(kernel)
        began = time.monotonic()
        self.run_all_cells()

        def done(d: object) -> dict | None:
            state = self.read_cells() or {}
            code = [c for c in state.get("cells", []) if c["code"]]
            if not code or self.kernel_status() != "idle" or any("*" in c["prompt"] for c in code):
                return None
            ran = [re.search(r"\[\d+\]", c["prompt"]) for c in code]
            # Every cell ran, or Run All stopped at a cell with an error (the rest stay unrun).
            return state if all(ran) or any(c["errors"] for c in code) else None

        state = self._wait(f"{name} finish running", done, timeout)
        assert isinstance(state, dict)
        cells = [
            CodeCell(
                index=c["index"],
                first_line=c["first_line"],
                prompt=c["prompt"],
                errors=list(c["errors"]),
                table_headers=[list(t) for t in c["tables"]],
                text=c["text"],
            )
            for c in state["cells"]
            if c["code"]
        ]
        return NotebookRun(name=name, kernel=state["kernel"], cells=cells, seconds=time.monotonic() - began)

    def scroll_to(self, cell: CodeCell) -> None:
        """Bring ``cell`` (its input and outputs) to the top of the notebook's view."""
        self.d.execute_script(  # type: ignore[attr-defined]
            "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
            "p.querySelectorAll('.jp-Notebook .jp-Cell')[arguments[0]].scrollIntoView({block: 'start'});",
            cell.index,
        )
        time.sleep(0.5)  # let the scrolled cells render

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(path))  # type: ignore[attr-defined]
        return path
