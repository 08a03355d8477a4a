"""Keys on a real Ladder, on SQLite and PostgreSQL: `flask --app api keys` run as an operator
runs it, rotation and revocation as a client meets them, the seeded admin key replaced when
LADDER_ADMIN_TOKEN changes, revoking from the dashboard, and a database dump with no token."""

from __future__ import annotations

import dataclasses
import http.cookiejar
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.serving import make_server

from api import create_app
from api.auth import RecentKeys, create_key, hash_token
from api.keys import seed_admin_key
from shared.db import Database
from shared.models import ApiKey
from shared.schema import upgrade
from tests.processes import ROOT, Stack, ladder_env
from tests.support import ADMIN_TOKEN, Client, Reply, need, wait_for

REVOKED_WITHIN = RecentKeys.KEEP_SECONDS + 10
"""How long a test waits for a token to be refused: the API's 5 s, and room for a slow machine."""
NEW_ADMIN_TOKEN = "a-changed-admin-token-of-32-characters-or-more"
SHOTS = ROOT / "var" / "screenshots"


def keys(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app api keys ARGS`, as an operator runs it on the server."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "api", "keys", *args],
        env=ladder_env(stack.settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def new_key(stack: Stack, prefix: str, *options: str) -> tuple[str, str]:
    """A key made with the CLI: its (name, token)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = keys(stack, "create", name, *options)
    assert made.returncode == 0, made.stderr
    return name, made.stdout.splitlines()[-1]


def jobs_status(stack: Stack, token: str) -> int:
    return Client(stack.base_url, token).call("GET", "/api/v1/jobs").status


def wait_until_refused(stack: Stack, token: str) -> None:
    wait_for(lambda: jobs_status(stack, token) == 401, "the token is refused", REVOKED_WITHIN)


def named(database_url: str, name: str) -> list[ApiKey]:
    db = Database(database_url)
    try:
        with db.session() as s:
            return list(s.scalars(select(ApiKey).where(ApiKey.name == name)))
    finally:
        db.engine.dispose()


def test_rotate_keeps_the_key_and_its_jobs_and_refuses_the_old_token(stack: Stack) -> None:
    name, old = new_key(stack, "rotate", "--max-active", "20")
    job = Client(stack.base_url, old).submit({"n": 12})
    rotated = keys(stack, "rotate", name)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.splitlines()[-1]
    assert rotated.stdout == new + "\n" and new != old and "within 5 s" in rotated.stderr
    wait_until_refused(stack, old)
    client = Client(stack.base_url, new)
    assert client.job(job["id"])["id"] == job["id"]  # the same key: its jobs stay its own
    (key,) = named(stack.settings.database_url, name)
    assert key.token_hash == hash_token(new) and key.max_active_jobs == 20


def test_a_revoked_key_is_refused_and_listed_as_revoked(stack: Stack) -> None:
    name, token = new_key(stack, "revoke")
    assert jobs_status(stack, token) == 200
    revoked = keys(stack, "revoke", name)
    assert revoked.returncode == 0 and "within 5 s" in revoked.stderr
    wait_until_refused(stack, token)
    listed = keys(stack, "list")
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(name + " ")]
    assert "never" not in row and row.rstrip().endswith("Z")  # used once, and revoked
    assert token not in listed.stdout and hash_token(token) not in listed.stdout
    again = keys(stack, "revoke", name)
    assert again.returncode != 0 and "no live key" in again.stderr


def test_a_duplicate_name_is_refused_and_nothing_is_made(stack: Stack) -> None:
    name, _ = new_key(stack, "dup")
    again = keys(stack, "create", name, "--admin")
    assert again.returncode != 0 and again.stdout == "" and f"'{name}'" in again.stderr
    assert len(named(stack.settings.database_url, name)) == 1
    # Two made at the same instant: the database's one-live-key-per-name index decides.
    racing = f"race-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(4)
    refused: list[IntegrityError] = []

    def make() -> None:
        db = Database(stack.settings.database_url)
        try:
            barrier.wait()
            create_key(db, racing)
        except IntegrityError as exc:
            refused.append(exc)
        finally:
            db.engine.dispose()

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 3 and len(named(stack.settings.database_url, racing)) == 1


# The seeded admin key ------------------------------------------------------------------------


@pytest.fixture
def fresh_url(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own on the stack's backend: changing the admin token revokes
    the stack's own admin key for good."""
    if stack.backend == "sqlite":
        url = f"sqlite:///{tmp_path}/seeded.db"
        upgrade(url)
        yield url
        return
    server, _, _ = stack.settings.database_url.rpartition("/")
    plain = stack.settings.database_url.replace("+psycopg", "")
    name = f"ladder_seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on a real HTTP server in this process; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        app.extensions["ladder"].db.engine.dispose()


def test_a_changed_admin_token_revokes_the_seeded_key_in_every_process(
    stack: Stack, fresh_url: str
) -> None:
    settings = dataclasses.replace(stack.settings, database_url=fresh_url)
    with serving(create_app(settings)) as running:
        assert Client(running, ADMIN_TOKEN).call("GET", "/api/v1/stats").status == 200
        # The restart with a new token: gunicorn's workers all seed at once.
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def start() -> None:
            db = Database(fresh_url)
            try:
                barrier.wait()
                seed_admin_key(db, NEW_ADMIN_TOKEN)
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)
            finally:
                db.engine.dispose()

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        renewed = dataclasses.replace(settings, admin_token=NEW_ADMIN_TOKEN)
        with serving(create_app(renewed)) as restarted:
            assert Client(restarted, NEW_ADMIN_TOKEN).call("GET", "/api/v1/stats").status == 200
            assert Client(restarted, ADMIN_TOKEN).call("GET", "/api/v1/stats").status == 401
            # The process still running with the old token stops taking it too.
            wait_for(
                lambda: Client(running, ADMIN_TOKEN).call("GET", "/api/v1/stats").status == 401,
                "the old admin token is refused",
                REVOKED_WITHIN,
            )
            assert Client(running, NEW_ADMIN_TOKEN).call("GET", "/api/v1/stats").status == 200
    admins = named(fresh_url, "admin")
    live = [k for k in admins if k.revoked_at is None]
    assert len(admins) == 2 and len(live) == 1
    assert live[0].seeded and live[0].token_hash == hash_token(NEW_ADMIN_TOKEN)


# The dashboard -------------------------------------------------------------------------------


class Browser:
    """Cookies kept, redirects not followed: a browser's requests, seen one at a time."""

    class _Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_: object) -> None:
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies, self._Stay)

    def open(self, path: str, form: dict[str, str] | None = None) -> Reply:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data, timeout=30) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())


def csrf_of(page: Reply) -> str:
    found = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert found, page.body
    return found.group(1).decode()


def test_the_dashboard_revokes_a_key_only_with_its_csrf_token_and_a_confirmation(
    stack: Stack,
) -> None:
    name, token = new_key(stack, "victim")
    (key,) = named(stack.settings.database_url, name)
    browser = Browser(stack.base_url)
    assert browser.open("/admin/login", {"token": ADMIN_TOKEN}).status == 302
    listing = browser.open("/admin/keys")
    assert listing.status == 200 and f'data-name="{name}"'.encode() in listing.body
    url = f"/admin/keys/{key.id}/revoke"
    confirm = browser.open(url)
    assert confirm.status == 200
    for form in ({"confirm": "yes"}, {"confirm": "yes", "csrf": "forged"}):
        assert browser.open(url, form).status == 403
    assert browser.open(url, {"csrf": csrf_of(confirm)}).status == 400  # not confirmed
    assert named(stack.settings.database_url, name)[0].revoked_at is None
    assert jobs_status(stack, token) == 200

    done = browser.open(url, {"csrf": csrf_of(confirm), "confirm": "yes"})
    assert done.status == 302
    assert named(stack.settings.database_url, name)[0].revoked_at is not None
    wait_until_refused(stack, token)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As tests/integration/test_dashboard.py starts it: nothing phones home from a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_an_admin_revokes_a_key_in_the_browser(stack: Stack) -> None:
    if not Path(CHROMIUM).exists():
        need("chromium", "Debian's chromium package (installed by .ci/run)")
    playwright = pytest.importorskip("playwright.sync_api")
    name, token = new_key(stack, "browsed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(base_url=stack.base_url)
        page.set_default_timeout(60_000)
        requests: list[str] = []
        blocked: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        # The pages' Content-Security-Policy would block an inline script or style.
        page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else 0)
        page.goto("/admin/")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.click("nav >> text=Keys")
        row = page.locator(f'tr[data-name="{name}"]')
        row.locator("a.revoke").click()
        assert f"Revoke key {name}?" in page.inner_text("h2")
        page.click("#confirm-revoke")
        page.locator(".notice").wait_for()
        assert "within 5 s" in page.inner_text(".notice")
        assert row.get_attribute("class") == "muted" and row.locator("a.revoke").count() == 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "keys.png"), full_page=True)
        browser.close()
    wait_until_refused(stack, token)
    assert [u for u in requests if not u.startswith(stack.base_url)] == []
    assert blocked == []


# What the database holds ---------------------------------------------------------------------


def dump(database_url: str) -> str:
    """Every row of every table, as text."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as raw:
            return "\n".join(raw.iterdump())
    rows = []
    with psycopg.connect(database_url.replace("+psycopg", "")) as raw:
        tables = raw.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (table,) in tables:
            rows += [repr(row) for row in raw.execute(f'SELECT * FROM "{table}"')]
    return "\n".join(rows)


def test_a_dump_of_the_database_holds_no_token(stack: Stack) -> None:
    name, first = new_key(stack, "dumped", "--admin")
    Client(stack.base_url, first).submit({"n": 9})
    rotated = keys(stack, "rotate", name).stdout.splitlines()[-1]
    Client(stack.base_url, rotated).submit({"n": 10})
    text = dump(stack.settings.database_url)
    for token in (ADMIN_TOKEN, rotated):
        assert hash_token(token) in text  # the dump is the real thing
    for token in (ADMIN_TOKEN, first, rotated):
        for secret in (token, token[4:20], token[-16:]):
            assert secret not in text, secret


def test_the_cli_in_a_shell_with_another_admin_token_changes_no_key(stack: Stack) -> None:
    """Only a serving API seeds: an operator's shell holding some other LADDER_ADMIN_TOKEN must
    not revoke the admin key the API serves with."""
    other = "x" * 40
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "api", "keys", "list"],
        env={**ladder_env(stack.settings), "LADDER_ADMIN_TOKEN": other},
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    db = Database(stack.settings.database_url)
    with db.session() as s:
        assert s.scalars(select(ApiKey).where(ApiKey.token_hash == hash_token(other))).all() == []
    db.engine.dispose()
    assert jobs_status(stack, ADMIN_TOKEN) == 200
