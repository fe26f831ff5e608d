"""A student's first minutes in JupyterLab, in a real browser (headless Chromium + Selenium).

The test starts ``jupyter lab`` on the loopback with a random token, opens the blank student
notebook 00 in Debian's Chromium, runs all cells from the Run menu (and, as a student does,
carries on below each cell that stops the run), then checks what the page shows: the exercise
cells, each test cell's readable failure message with no frame from ``course_utils``, and
nbgrader's Validate button, which it clicks. Screenshots go to ``test-artifacts/browser/``.

Needs ``apt-get install chromium chromium-driver`` (``.ci/run`` installs them) and selenium
(the ``[dev]`` extra): skipped without them, except on CI (env ``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.notebook_code import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NAME = "00_welcome"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
#: Seconds to wait for the page, for one run of cells, and for nbgrader's validation.
TIMEOUT = 90
#: Flags for Chromium on a machine without a display or network (no sandbox: CI runs as root).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1400,1000")
#: JupyterLab settings: every cell in the page (no windowing), no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


@pytest.fixture
def chromium():
    """Skip (fail on CI) unless Chromium, ChromeDriver and selenium are installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        reason = ("the browser test needs " + ", ".join(missing)
                  + ": apt-get install -y chromium chromium-driver")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab(tmp_path, chromium):
    """A JupyterLab server on the loopback, serving a copy of the blank student notebook; its
    user settings, workspaces and runtime files live in tmp_path. Yields (url, notebook)."""
    root = tmp_path / "root"
    root.mkdir()
    notebook = root / f"{NAME}.ipynb"
    shutil.copy2(ROOT / "notebooks" / NAME / f"{NAME}.ipynb", notebook)
    for name, values in LAB_SETTINGS.items():
        path = tmp_path / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--ServerApp.shutdown_no_activity_timeout=600",
               f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
               f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not start:\n"
                                + (tmp_path / "jupyter.log").read_text()[-3000:])
                time.sleep(0.2)
        yield f"{url}/lab/tree/{NAME}.ipynb?token={token}", notebook
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def browser(tmp_path, chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The notebook as JupyterLab shows it, and what a student does with the mouse."""

    def __init__(self, driver):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, TIMEOUT, poll_frequency=0.2,
                                  ignored_exceptions=(StaleElementReferenceException,))

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    @property
    def cells(self) -> list:
        return self.find(CELLS)

    def prompts(self) -> list[str]:
        """Each cell's input prompt: "" (markdown), "[ ]:" (not run), "[*]:" (running or
        queued), "[3]:" (run)."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(cell => "
            "(cell.querySelector('.jp-InputPrompt') || {innerText: ''}).innerText.trim())",
            CELLS)

    def idle(self) -> bool:
        indicators = self.find(".jp-Notebook-ExecutionIndicator")
        return bool(indicators) and indicators[0].get_attribute("data-status") == "idle" \
            and "[*]:" not in self.prompts()

    def menu(self, menu: str, command: str) -> None:
        """Click ``menu`` in the menu bar, then its item that runs ``command``."""
        bar = [item for item in self.find(".lm-MenuBar-item") if item.text == menu]
        assert bar, f"no {menu} menu"
        bar[0].click()
        self.wait.until(lambda _: self.find(f'.lm-Menu-item[data-command="{command}"]'))
        self.find(f'.lm-Menu-item[data-command="{command}"]')[0].click()

    def run(self, command: str, start: int, select: bool = True) -> None:
        """Select code cell ``start``, run a Run-menu command, and wait until that cell has
        run and the kernel is idle again."""
        cell = self.cells[start]
        if select:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
            cell.find_element("css selector", ".jp-InputPrompt").click()
            self.wait.until(lambda _: "jp-mod-active" in self.cells[start].get_attribute("class"))
        self.menu("Run", command)
        self.wait.until(lambda _: self.prompts()[start] not in ("[ ]:", "[*]:") and self.idle(),
                        message=f"cell {start} and below did not finish")

    def text(self, cell) -> str:
        return self.driver.execute_script("return arguments[0].innerText", cell)

    def outputs(self, cell) -> str:
        return "\n".join(self.text(output)
                         for output in cell.find_elements("css selector", ".jp-OutputArea"))

    def screenshot(self, name: str, element=None) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if element is None:
            self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        else:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
            element.screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_blank_notebook_run_all_in_jupyterlab(lab, browser):
    url, path = lab
    notebook = nbformat.read(path, as_version=4)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    page = Page(browser)
    browser.get(url)
    try:
        student_runs_all(page, notebook)
    except BaseException:
        page.screenshot("failure")  # what the page showed when the test gave up
        raise


def student_runs_all(page: Page, notebook: nbformat.NotebookNode) -> None:
    info = [cell.metadata.get("nbgrader", {}) for cell in notebook.cells]
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    exercises = [i for i in code if info[i].get("solution")]
    tests = [i for i in code if info[i].get("grade")]
    assert exercises and tests
    page.wait.until(lambda _: len(page.cells) == len(notebook.cells) and page.idle()
                    and page.find(".jp-KernelName") and "No Kernel" not in page.find(
                        ".jp-KernelName")[0].text, message="the notebook did not open")
    page.screenshot("01-opened")

    # nbgrader's Validate button is in the notebook's toolbar, enabled
    validate = page.find(".jp-NotebookPanel-toolbar jp-button.validate-button")
    assert validate and validate[0].is_displayed(), "no Validate button in the toolbar"
    assert validate[0].get_attribute("aria-disabled") != "true"
    assert validate[0].text.strip() == "Validate"

    # Run -> Run All Cells; each error stops the run, so carry on from the first cell that
    # did not run, as a student does (Run -> Run Selected Cell and All Below)
    page.run("runmenu:run-all", code[0], select=False)
    for _ in code:
        waiting = [i for i in code if page.prompts()[i] == "[ ]:"]
        if not waiting:
            break
        page.run("notebook:run-all-below", waiting[0])
    assert "[ ]:" not in page.prompts()
    page.screenshot("02-after-run-all")
    cells = page.cells
    setup = page.outputs(cells[code[0]])
    assert "course_utils" in setup and "device:" in setup, setup

    # the exercise cells, blank
    for index in exercises:
        shown = page.text(cells[index])
        assert f"def {info[index]['grade_id']}" in shown, shown
        assert "raise NotImplementedError()" in shown, shown

    # each test cell: the check's readable message; no cell shows a frame of course_utils
    for index in tests:
        grade_id = info[index]["grade_id"]
        page.screenshot(grade_id, cells[index])
        shown = page.outputs(cells[index])
        assert f"CheckFailure: {grade_id.removeprefix('test_')}:" in shown, shown
        assert "Traceback (most recent call last)" not in shown, shown
    for index in code:
        frames = [line for line in page.outputs(cells[index]).splitlines()
                  if "course_utils/" in line]
        assert not frames, f"cell {index} shows frames of course_utils: {frames}"

    # Validate: nbgrader runs the notebook and lists the failing test cells
    page.find(".jp-NotebookPanel-toolbar jp-button.validate-button")[0].click()
    page.wait.until(lambda _: page.find(".jp-Dialog"), message="Validate showed no dialog")
    dialog = page.find(".jp-Dialog")[0]
    page.screenshot("03-validate", dialog.find_element("css selector", ".jp-Dialog-content"))
    results = page.text(dialog)
    for index in tests:
        assert notebook.cells[index].source.splitlines()[0] in results, results
    assert "CheckFailure" in results, results
