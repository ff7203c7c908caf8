"""Headless Chromium for browser tests: Debian's ``chromium`` driven by its own
``chromedriver`` through Selenium (nothing is downloaded).

Screenshots land in ``$ARTIFACTS_DIR/screenshots`` (default ``artifacts/``, ignored
by git; CI keeps the folder). Without Chromium the tests are skipped, unless
``REQUIRE_BROWSER_TESTS`` is set (CI sets it), which turns the skip into a failure.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from django.contrib.auth import get_user_model
from django.core.servers.basehttp import WSGIServer
from django.db import connections
from django.test import Client
from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts")) / "screenshots"
#: How long a test waits for the page to react (live counter, navigation).
WAIT_SECONDS = 10


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    browser = _find("CHROMIUM_BIN", "chromium", "chromium-browser")
    driver = _find("CHROMEDRIVER", "chromedriver")
    if browser and driver:
        return browser, driver
    reason = (
        "browser tests need Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)"
    )
    if os.environ.get("REQUIRE_BROWSER_TESTS"):
        pytest.fail(reason)
    pytest.skip(reason)


def start_chromium(chromium_paths, *, accept_insecure_certs: bool = False):
    """A headless Chromium under Selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # For a site on a self-signed certificate (the production test's gunicorn).
    options.accept_insecure_certs = accept_insecure_certs
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1300",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(executable_path=driver_path), options=options
    )
    driver.implicitly_wait(0)
    return driver


@pytest.fixture(scope="session")
def driver_session(chromium_paths):
    driver = start_chromium(chromium_paths)
    yield driver
    driver.quit()


class Browser:
    """The Selenium driver plus what the tests need again and again."""

    def __init__(self, driver, live_server, test_name: str) -> None:
        self.driver = driver
        self.base_url = live_server.url
        self._prefix = re.sub(r"[^\w-]+", "_", test_name)
        self._shots = 0
        # A rerun replaces the test's screenshots instead of mixing with them.
        for old in ARTIFACTS.glob(f"{self._prefix}-*.png"):
            old.unlink()

    def get(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, condition, message: str = ""):
        """Wait until ``condition(driver)`` is truthy; return its value."""
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT_SECONDS).until(condition, message)

    def wait_for_text(self, css: str, text: str):
        return self.wait_for(
            lambda d: text in self.find(css).text,
            f"{text!r} never appeared in {css}",
        )

    def click(self, css: str) -> None:
        element = self.find(css)
        self.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'})", element
        )
        element.click()

    def screenshot(self, name: str, at: str | None = None) -> Path:
        """Save the window as a PNG, scrolled to show ``at`` (a CSS selector) if given."""
        if at:
            self.driver.execute_script(
                "arguments[0].scrollIntoView({block: 'start'})", self.find(at)
            )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._shots += 1
        path = ARTIFACTS / f"{self._prefix}-{self._shots:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path


class _SingleThreadedServer(LiveServerThread):
    """Django's live server, answering one request at a time.

    The test database is SQLite in memory, shared with the server through one
    connection; a threaded server closes that connection from its request threads
    when the browser drops a keep-alive socket. A single-threaded server answers with
    "Connection: close" and only ever touches the connection from its own thread
    (Django's own Selenium tests do the same).
    """

    def _create_server(self, connections_override=None):
        return WSGIServer(
            (self.host, self.port), QuietWSGIRequestHandler, allow_reuse_address=False
        )


@pytest.fixture
def site_server(transactional_db, settings):
    """The site on a free local port, for one test; ``.url`` is its origin."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = _SingleThreadedServer(
        "127.0.0.1", StaticFilesHandler, connections_override=shared, port=0
    )
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    thread.url = f"http://127.0.0.1:{thread.port}"
    yield thread
    thread.terminate()
    for conn in shared.values():
        conn.dec_thread_sharing()


@pytest.fixture
def browser(driver_session, site_server, request):
    """A browser logged in to the admin as a superuser."""
    user = get_user_model().objects.create_superuser(
        "marketer", "marketer@example.com", "a long test password"
    )
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    driver_session.delete_all_cookies()
    # A cookie can only be set for the page's own origin: open it first.
    driver_session.get(site_server.url + "/admin/login/")
    driver_session.add_cookie({"name": "sessionid", "value": session, "path": "/"})
    browser = Browser(driver_session, site_server, request.node.name)
    yield browser
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        browser.screenshot("failure")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the test's outcome on it, so the browser fixture can screenshot a failure."""
    report = yield
    if report.when == "call":
        item.report_call = report
    return report
