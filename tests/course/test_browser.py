"""The course's widgets in a real browser: JupyterLab from this venv, driven by Debian's Chromium.

Starts ``jupyter lab`` on a free loopback port (random token, its own settings/config/data/runtime folders,
no news, no extension-manager network, run folders under a temporary LAB_RUNS_DIR), opens notebooks 01
and 04 in headless Chromium through Playwright, runs only the light cells up to and including the one
that builds each widget (Shift+Enter on each, as a learner would), changes a control and checks that
the widget's output changes. Any widget error in the page (``Error displaying widget``, ``model not
found``, a model class that fails to load, the plain-text repr instead of the widget) fails the test.

Screenshots go to build/screenshots/; ``LAB_UPDATE_DOC_IMAGES=1`` also copies the two widget shots to
docs/img/ for the README. Needs the ``test`` extra (playwright) and Debian's chromium (``make browser``);
Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labhelpers.paths import NOTEBOOKS_DIR, REPO_ROOT

CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPENED = [NOTEBOOKS_DIR / "01_concepts.ipynb", NOTEBOOKS_DIR / "04_custom_data.ipynb"]
SHOTS = REPO_ROOT / "build" / "screenshots"
DOC_IMAGES = REPO_ROOT / "docs" / "img"
# What a broken widget looks like in the page: the front end's own messages, in the console or in place of
# the widget (an ipywidgets kernel the lab extension cannot serve, a missing extension, a closed comm).
WIDGET_ERRORS = re.compile(r"Error displaying widget|model not found|Failed to load model class|"
                           r"Could not create (a )?(model|view)|Could not find a widget|is not registered|"
                           r"Error creating widget|Error setting state|Class \S+ not found in module", re.I)
PLAIN_REPR = re.compile(r"^\s*(VBox|HBox|Box)\(children=", re.M)   # what shows when no widget manager runs
CELL_TIMEOUT_MS = 240_000   # a kernel that imports torch on two busy cores is slow, not broken
UI_TIMEOUT_MS = 30_000

# Settings that keep JupyterLab quiet and every cell in the page (windowed notebooks detach far cells).
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    # Never write the course's notebooks back (running a cell makes them dirty; autosave would save outputs).
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET", timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:   # noqa: S310 (loopback only)
        return resp.status, resp.read()


class Lab:
    """A running JupyterLab: ``url(path)`` adds the token; ``log()`` is what the server printed."""

    def __init__(self, port: int, token: str, log_path: Path):
        self.base, self.token, self.log_path = f"http://127.0.0.1:{port}", token, log_path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        status, body = _get(self.url(f"api/{path}"), method)
        return json.loads(body) if body else status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _stop(proc: subprocess.Popen, lab: Lab) -> None:
    """Shut the kernels down, then the server's whole process group (TERM, then KILL)."""
    if proc.poll() is None:
        try:
            for kernel in lab.api("kernels"):
                lab.api(f"kernels/{kernel['id']}", method="DELETE")
        except (OSError, ValueError, urllib.error.URLError):
            pass
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module", autouse=True)
def notebooks_untouched():
    """The browser only reads the course: the notebooks it opens must be byte for byte what they were."""
    before = {p: p.read_bytes() for p in OPENED}
    yield
    changed = [p.name for p, content in before.items() if p.read_bytes() != content]
    assert not changed, f"the browser test changed {changed}; re-render them (make notebooks)"


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory) -> Lab:
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.fail(f"{jupyter} not found: run the tests with the project's venv (.venv/bin/python -m pytest)")
    home = tmp_path_factory.mktemp("jupyterlab")
    settings = home / "user-settings"
    for name, values in USER_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    # Own config/data/runtime folders: no user-level kernelspec or config can replace the venv's python3 kernel.
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), LAB_RUNS_DIR=str(home / "runs"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    port, token = _free_port(), secrets.token_hex(16)
    log_path = home / "jupyterlab.log"
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO_ROOT}", "--ServerApp.ip=127.0.0.1",
           "--ServerApp.terminals_enabled=False", f"--FileCheckpoints.root_dir={home / 'checkpoints'}",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")   # CI containers run as root
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(port, token, log_path)
    request.addfinalizer(lambda: _stop(proc, server))
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            if _get(server.url("api/status"))[0] == 200:
                break
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"jupyter lab did not answer on port {port} within 120 s:\n{server.log()[-3000:]}")
        time.sleep(0.5)
    specs = server.api("kernelspecs")
    python3 = specs["kernelspecs"].get("python3")
    assert python3 and python3["spec"]["argv"][0] in {"python", "python3"}, (
        f"the python3 kernel must be the venv's own (argv python -> {sys.executable}), got {python3}")
    return server


@pytest.fixture(scope="module")
def browser(request):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser`, or apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (make venv)")
    pw = sync_playwright().start()
    request.addfinalizer(pw.stop)
    # launch() gives Chromium a fresh, empty profile (--user-data-dir in a temporary folder) and removes it.
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=120_000)
    request.addfinalizer(chromium.close)
    return chromium


class Page:
    """One notebook open in its own JupyterLab workspace, with the page's console collected."""

    def __init__(self, browser, lab: Lab, notebook: Path, workspace: str):
        from playwright.sync_api import expect

        self.lab, self.notebook = lab, notebook
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        rel = notebook.relative_to(REPO_ROOT).as_posix()
        self.page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{rel}"), timeout=120_000)
        self.panel = self.page.locator(".jp-NotebookPanel:visible")
        # The venv's python3 kernel (the notebooks' kernelspec) started, connected and idle.
        expect(self.panel.locator(".jp-Toolbar-kernelName")).to_have_text(
            re.compile(r"Python 3"), timeout=CELL_TIMEOUT_MS)
        self.panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=CELL_TIMEOUT_MS)
        self.cells = json.loads(notebook.read_text())["cells"]
        self.cell_nodes = self.panel.locator(".jp-Notebook .jp-Cell")
        # Every cell is in the page (windowingMode none), so the n-th cell node is the file's n-th cell.
        expect(self.cell_nodes).to_have_count(len(self.cells), timeout=UI_TIMEOUT_MS)

    def index(self, predicate) -> int:
        return next(i for i, c in enumerate(self.cells) if c["cell_type"] == "code" and predicate("".join(c["source"])))

    def run_cell(self, i: int):
        """Select code cell ``i`` (click its prompt) and run it with Shift+Enter; wait for its [n]."""
        from playwright.sync_api import expect

        cell = self.cell_nodes.nth(i)
        prompt = cell.locator(".jp-InputArea .jp-InputPrompt").first
        # Just after the kernel reports idle, JupyterLab can drop a run request: press again until it is queued.
        for attempt in range(5):
            dialogs = self.page.locator(".jp-Dialog")
            if dialogs.count() == 1 and dialogs.inner_text().startswith("Select Kernel"):
                # A run pressed while the session was still connecting asks for a kernel: keep the preferred one.
                expect(dialogs.locator("select")).to_have_value(re.compile(r"python3"))
                dialogs.locator(".jp-Dialog-button.jp-mod-accept").click()
                dialogs.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
            if dialogs.count():
                self.shoot(f"dialog-{self.notebook.stem}.png")
                raise AssertionError(f"{self.notebook.name}: JupyterLab shows a dialog: {dialogs.all_inner_texts()}"
                                     + "\n" + "\n".join(self.console[-20:]))
            prompt.click()
            self.page.keyboard.press("Shift+Enter")
            try:
                expect(prompt).to_have_text(re.compile(r"\[(\*|\d+)\]:"), timeout=5_000)
                break
            except AssertionError:
                if attempt == 4:
                    raise
        expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=CELL_TIMEOUT_MS)
        text = cell.locator(".jp-OutputArea").inner_text()
        assert "Traceback" not in text, f"{self.notebook.name} cell {i} failed:\n{text[-2000:]}"
        return cell

    def console_widget_errors(self, limit: int = 8) -> list[str]:
        """The console's widget errors, first lines only, each once (a broken front end repeats them)."""
        seen: dict[str, int] = {}
        for message in self.console:
            if WIDGET_ERRORS.search(message):
                first = message.strip().splitlines()[0][:300]
                seen[first] = seen.get(first, 0) + 1
        return [f"{m}  (x{n})" if n > 1 else m for m, n in list(seen.items())[:limit]]

    def widget(self, cell):
        """The widget box ``cell`` displayed; fails at once with what shows instead (an error, a plain repr)."""
        box = cell.locator(".jp-OutputArea-output .widget-vbox").first
        area = cell.locator(".jp-OutputArea")
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while not box.is_visible():
            shown = area.inner_text()
            if WIDGET_ERRORS.search(shown) or PLAIN_REPR.search(shown) or time.monotonic() > deadline:
                self.shoot(f"broken-{self.notebook.stem}.png", area)
                raise AssertionError(f"{self.notebook.name}: no widget was displayed; the output area shows:\n"
                                     f"{shown.strip()[:1000]}\n--- widget errors in the browser console ---\n"
                                     + "\n".join(self.console_widget_errors()))
            self.page.wait_for_timeout(200)
        return box

    def widget_errors(self) -> list[str]:
        shown = self.panel.locator(".jp-OutputArea").all_inner_texts()
        return ([f"console {m}" for m in self.console_widget_errors()]
                + [f"output: {t.strip()[:300]}" for t in shown if WIDGET_ERRORS.search(t) or PLAIN_REPR.search(t)])

    def shoot(self, name: str, locator=None) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        (locator or self.page).screenshot(path=str(path))
        return path

    def close(self):
        self.context.close()


def _control(box, kind: str, label: str):
    page = box.page
    return box.locator(f".widget-{kind}",
                       has=page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$")))


def _publish(shots: list[Path]) -> None:
    if os.environ.get("LAB_UPDATE_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy2(shot, DOC_IMAGES / shot.name)


def _assert_no_widget_errors(nb: Page, lab: Lab):
    errors = nb.widget_errors()
    assert not errors, "widget errors in JupyterLab:\n" + "\n".join(errors) + (
        "\n--- browser console (last 10, first lines) ---\n"
        + "\n".join(m.strip().splitlines()[0][:300] for m in nb.console[-10:] if m.strip()))


def test_memory_calculator_in_jupyterlab(lab, browser):
    from playwright.sync_api import expect

    nb = Page(browser, lab, OPENED[0], "browser-test-01")
    try:
        first = nb.index(lambda s: s.startswith("# Parameters"))
        setup = nb.index(lambda s: "from labhelpers import" in s and "widgets" in s
                         and "AutoTokenizer.from_pretrained" in s)
        target = nb.index(lambda s: s.strip().startswith("widgets.memory_calculator("))
        for i in range(first, setup + 1):
            if nb.cells[i]["cell_type"] == "code":
                nb.run_cell(i)
        cell = nb.run_cell(target)
        box = nb.widget(cell)
        result = box.locator(".widget-html-content").last
        expect(result).to_contain_text("GiB", timeout=UI_TIMEOUT_MS)
        before = result.inner_text()
        assert "batch 1 x seq 512" in before, before
        batch = _control(box, "text", "batch size").locator("input")
        batch.fill("8")
        batch.press("Enter")
        expect(result).to_contain_text("batch 8 x seq 512", timeout=UI_TIMEOUT_MS)
        _control(box, "dropdown", "model").locator("select").select_option("qwen2.5-0.5b")
        expect(result).to_contain_text("qwen2.5-0.5b, qlora", timeout=UI_TIMEOUT_MS)
        assert result.inner_text() != before
        nb.page.wait_for_timeout(300)
        shots = [nb.shoot("memory-calculator.png", cell.locator(".jp-OutputArea")), nb.shoot("01_concepts_page.png")]
        _assert_no_widget_errors(nb, lab)
        _publish(shots[:1])
    finally:
        nb.close()


def test_template_playground_in_jupyterlab(lab, browser):
    from playwright.sync_api import expect

    nb = Page(browser, lab, OPENED[1], "browser-test-04")
    try:
        first = nb.index(lambda s: s.startswith("# Parameters"))
        setup = nb.index(lambda s: "tokenizer = AutoTokenizer.from_pretrained" in s)
        target = nb.index(lambda s: "widgets.template_playground(" in s)
        for i in range(first, setup + 1):
            if nb.cells[i]["cell_type"] == "code":
                nb.run_cell(i)
        cell = nb.run_cell(target)
        box = nb.widget(cell)
        result = box.locator(".widget-html-content").last
        expect(result).to_contain_text("training text", timeout=UI_TIMEOUT_MS)
        before = result.inner_text()
        assert box.locator(".lab-token-trained").count() > 0 and box.locator(".lab-token-masked").count() > 0
        template = _control(box, "textarea", "template").locator("textarea")
        template.fill("User: {input}\nAssistant: {output}")
        expect(result).to_contain_text("User: What does the word gloomy mean?", timeout=UI_TIMEOUT_MS)
        assert result.inner_text() != before
        nb.page.wait_for_timeout(300)
        shots = [nb.shoot("template-playground.png", cell.locator(".jp-OutputArea"))]
        template.fill("User: {question}\nAssistant: {output}")
        expect(result).to_contain_text("DataError", timeout=UI_TIMEOUT_MS)
        assert "['question'] not in the data" in result.inner_text() and "Traceback" not in result.inner_text()
        shots.append(nb.shoot("template-playground-error.png", cell.locator(".jp-OutputArea")))
        shots.append(nb.shoot("04_custom_data_page.png"))
        _assert_no_widget_errors(nb, lab)
        _publish(shots[:1])
    finally:
        nb.close()
