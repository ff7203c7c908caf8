"""The site as production runs it, in a real browser.

`manage.py serve` (what `make serve-prod` runs) starts from scratch on a fresh database
with the production settings: DEBUG off, the site over https (gunicorn with a
self-signed certificate, so SSL redirects and secure cookies stay on), static files
collected and served by WhiteNoise, and the real Plivo backend talking to a local
stand-in of Plivo's API (bench/standin.py) instead of the simulator; `run_worker`
sends. A marketer logs in, composes a text the live counter calls UCS-2, sends it
through the confirmation page and watches the campaign page until it completes.
Then Ctrl-C stops every process.

Nothing here touches the suite's own test database: the server is a separate set of
processes, set up only through the commands and the API an operator uses.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests

from django.conf import settings

from tests.browser.conftest import Browser, start_chromium
from tests.browser.test_composer import EN_DASH, _select_list
from tests.providers.servers import write_self_signed_certificate

ROOT = Path(__file__).resolve().parents[2]
PLIVO_AUTH_ID = "MAPRODUCTIONBROWSER1"
PLIVO_NUMBER = "+14155550100"
PASSWORD = "a long production test password"
PARTY = "\U0001f389"  # an emoji: outside the BMP, no GSM-7 stand-in
HASHED = r"\.[0-9a-f]{12}\."
START_SECONDS = 90
"""Migrate, collectstatic and gunicorn's boot, on a busy 2-core machine."""
# What the server may take from this environment: nothing Django reads.
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")


@dataclass
class ProductionSite:
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    vendor_log: Path
    ca: Path

    def manage(self, *args: str, **env: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def vendor_received(self) -> list[dict]:
        if not self.vendor_log.exists():
            return []
        lines = self.vendor_log.read_text().splitlines()
        return [entry for entry in map(json.loads, lines) if "to" in entry]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _database(directory: Path):
    """A new, empty database of the kind the suite runs on, as a DATABASE_URL."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        yield f"sqlite:///{directory / 'production.sqlite3'}"
        return
    import psycopg

    name = re.sub(r"\W", "_", f"{db['NAME']}_serve")
    server = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": db.get("PORT") or 5432,
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }

    def admin(sql: str) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
            conn.execute(sql)

    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    credentials = quote(server["user"]) + (
        f":{quote(server['password'])}" if server["password"] else ""
    )
    try:
        yield f"postgres://{credentials}@{server['host']}:{server['port']}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _plivo_standin(log: Path):
    """bench/standin.py speaking Plivo's Message API on a free port."""
    process = subprocess.Popen(
        [
            sys.executable, str(ROOT / "bench" / "standin.py"),
            "--vendor", "plivo", "--port", "0",
            "--auth-id", PLIVO_AUTH_ID, "--log", str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        ready = json.loads(process.stdout.readline() or "{}")
        assert ready.get("ready"), "the Plivo stand-in did not start"
        yield ready["url"]
    finally:
        process.terminate()
        process.wait(15)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def production_site(chromium_paths, tmp_path_factory):
    directory = tmp_path_factory.mktemp("production")
    cert, key = write_self_signed_certificate(directory, "site")
    vendor_log = directory / "plivo.jsonl"
    with _plivo_standin(vendor_log) as plivo_url, _database(directory) as database:
        port = _free_port()
        url = f"https://127.0.0.1:{port}"
        env = {name: os.environ[name] for name in KEEP if name in os.environ}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
                "ENV_FILE": os.devnull,
                "DEBUG": "false",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": "127.0.0.1",
                "PUBLIC_BASE_URL": url,
                "DATABASE_URL": database,
                "STATIC_ROOT": str(directory / "static"),
                "MEDIA_ROOT": str(directory / "media"),
                "SMS_DEFAULT_PROVIDER": "plivo",
                "PLIVO_AUTH_ID": PLIVO_AUTH_ID,
                "PLIVO_AUTH_TOKEN": secrets.token_hex(20),
                "PLIVO_SENDER_ID": PLIVO_NUMBER,
                "PLIVO_API_URL": plivo_url,
                "WEB_CONCURRENCY": "2",
                # TLS at gunicorn itself: no proxy needed for https.
                "GUNICORN_CMD_ARGS": f"--certfile={cert} --keyfile={key}",
            }
        )
        log = directory / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, as a terminal gives it: Ctrl-C is a SIGINT
                # to the group.
                start_new_session=True,
            )
        site = ProductionSite(url, env, process, log, vendor_log, cert)
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                if process.poll() is not None:
                    pytest.fail(f"manage.py serve exited:\n{site.output()[-3000:]}")
                try:
                    if requests.get(f"{url}/health/", verify=cert, timeout=2).ok:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the site never answered:\n{site.output()[-3000:]}")
                time.sleep(0.3)
            yield site
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def production_browser(chromium_paths, production_site):
    driver = start_chromium(chromium_paths, accept_insecure_certs=True)
    yield driver
    driver.quit()


def test_static_files_are_served_hashed_compressed_and_cached(production_site):
    site = production_site

    def head(path: str) -> requests.Response:
        return requests.get(
            site.url + path,
            verify=site.ca,
            headers={"Accept-Encoding": "gzip"},
            stream=True,
            timeout=10,
        )

    plain = head("/static/admin/css/base.css")
    assert plain.status_code == 200
    assert plain.headers["Content-Type"].startswith("text/css")
    assert plain.headers["Cache-Control"] == "max-age=86400, public"
    # Pages link the hashed names, which never change: cached for ten years.
    login = requests.get(f"{site.url}/admin/login/", verify=site.ca, timeout=10)
    css = re.search(rf'href="(/static/admin/css/base{HASHED}css)"', login.text)
    assert css, login.text[:2000]
    hashed = head(css.group(1))
    assert hashed.status_code == 200
    assert hashed.headers["Cache-Control"] == "max-age=315360000, public, immutable"
    assert hashed.headers["Content-Encoding"] == "gzip"
    # Not under DEBUG: an unknown file is a 404 page, not a listing or a traceback.
    assert head("/static/admin/css/no-such-file.css").status_code == 404


def test_the_marketers_journey_under_production_settings(
    production_site, production_browser, request
):
    site = production_site
    # --- The operator's set-up: a login, an API key, and contacts through the API ----
    site.manage(
        "createsuperuser", "--no-input", "--username", "marketer",
        "--email", "marketer@example.com", DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )  # fmt: skip
    key = site.manage(
        "create_api_key", "production browser test", "--scope", "write_contacts"
    ).strip()
    api = {
        "headers": {"Authorization": f"Token {key}"},
        "verify": site.ca,
        "timeout": 10,
    }
    spring = requests.post(
        f"{site.url}/api/v1/lists/", json={"name": "Spring customers"}, **api
    )
    assert spring.status_code == 201, spring.text
    people = [("+12065550100", "Ada"), ("+12065550101", "Grace"), ("+12065550102", "")]
    imported = requests.post(
        f"{site.url}/api/v1/contacts/import/",
        json={
            "list": spring.json()["id"],
            "contacts": [{"phone": p, "first_name": n} for p, n in people],
        },
        **api,
    )
    assert imported.json()["created"] == 3, imported.text

    browser = Browser(production_browser, site, request.node.name)
    try:
        _journey(browser, site, spring_id=spring.json()["id"])
    except Exception:
        browser.screenshot("failure")
        print(site.output()[-4000:])
        raise


def _journey(browser: Browser, site: ProductionSite, *, spring_id: int) -> None:
    # --- Log in ------------------------------------------------------------------------
    browser.get("/admin/")
    browser.wait_for(lambda d: browser.find_all("#id_username"), "no login form")
    assert browser.driver.current_url.startswith(f"{site.url}/admin/login/")
    browser.find("#id_username").send_keys("marketer")
    browser.find("#id_password").send_keys(PASSWORD)
    browser.screenshot("login")
    _submit(browser, 'input[type="submit"]')
    browser.wait_for_text("#site-name", "smscampaigns")
    # The admin's CSS came through WhiteNoise: the header is styled.
    header = browser.find("#header").value_of_css_property("background-color")
    assert header != "rgba(0, 0, 0, 0)"
    browser.screenshot("admin-index")

    # --- Compose: the live counter runs and calls the text UCS-2 ------------------------
    browser.get("/admin/campaigns/campaign/add/")
    script = browser.driver.execute_script(
        "return document.querySelector('script[src*=\"campaigns/composer\"]').src"
    )
    assert re.search(rf"/static/campaigns/composer{HASHED}js$", script), script
    browser.find("#id_name").send_keys("Spring sale")
    _select_list(browser, SimpleNamespace(pk=spring_id))
    body = browser.find("#id_body")
    body.send_keys(f"Hi {{first_name|there}}, spring sale {EN_DASH} 20% off today ")
    # ChromeDriver cannot type outside the BMP: insert the emoji as a paste would.
    browser.driver.execute_script(
        "arguments[0].focus();"
        "arguments[0].setSelectionRange(arguments[0].value.length, arguments[0].value.length);"
        "document.execCommand('insertText', false, arguments[1]);",
        body,
        PARTY,
    )
    browser.wait_for_text("#composer-encoding", "UCS-2")
    named = browser.find("#composer-ucs2-chars").text
    assert EN_DASH in named
    assert "party popper" in named
    browser.wait_for_text("#composer-recipients", "3")
    browser.wait_for_text("#composer-sample-text", f"Hi Ada, spring sale {EN_DASH}")
    browser.screenshot("composer-ucs2", at="#composer")
    _submit(browser, 'input[name="_continue"]')

    # --- Send now, through the confirmation page ---------------------------------------
    browser.click("#action-send")
    browser.wait_for(lambda d: browser.find_all("#confirm-recipients"), "no send page")
    assert "3" in browser.find("#confirm-recipients").text
    browser.screenshot("send-confirm")
    _submit(browser, "#confirm-action")

    # --- Watch: run_worker sends through Plivo; the page follows by itself -------------
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.driver, 45).until(
        lambda d: browser.find("#content h1").text == "Spring sale (completed)",
        "the campaign page never showed the campaign completed",
    )
    WebDriverWait(browser.driver, 15).until(
        lambda d: (
            browser.find("#dashboard-count-sent").get_attribute("data-count") == "3"
        ),
        "the page never counted three messages sent",
    )
    browser.screenshot("completed")

    # Plivo's API got each text once, as the recipient reads it.
    received = sorted((entry["to"], entry["text"]) for entry in site.vendor_received())
    footer = "\nReply STOP to opt out"
    assert received == [
        (
            "+12065550100",
            f"Hi Ada, spring sale {EN_DASH} 20% off today {PARTY}{footer}",
        ),
        (
            "+12065550101",
            f"Hi Grace, spring sale {EN_DASH} 20% off today {PARTY}{footer}",
        ),
        (
            "+12065550102",
            f"Hi there, spring sale {EN_DASH} 20% off today {PARTY}{footer}",
        ),
    ]


def _submit(browser: Browser, css: str) -> None:
    old = browser.find("html")
    browser.click(css)
    browser.wait_for(lambda d: old.id != browser.find("html").id, "no new page")


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_ctrl_c_stops_the_server_and_the_worker_together(production_site):
    """Last in this module: it stops the site the others used."""
    process = production_site.process
    children = _descendants(process.pid)
    # gunicorn's master, its two workers, and run_worker.
    assert len(children) >= 4, production_site.output()[-2000:]
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(40) == 0, production_site.output()[-2000:]
    assert production_site.output().rstrip().endswith("Stopped.")
    deadline = time.monotonic() + 10
    while alive := {pid for pid in children if Path(f"/proc/{pid}").exists()}:
        assert time.monotonic() < deadline, f"still running: {alive}"
        time.sleep(0.2)
