"""The dashboard in a real headless Chromium: sign in, watch workers and jobs live, cancel a
queued job, retry a failed one, and nothing ever leaves localhost."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from api import create_app
from tests.browser import chromium, shot
from tests.processes import Stack
from tests.support import LONG, Receiver


@pytest.fixture
def page(stack: Stack) -> Iterator[object]:
    with chromium() as browser:
        page = browser.new_page(base_url=stack.base_url)
        page.set_default_timeout(60_000)
        page.requests = []
        page.on("request", lambda r: page.requests.append(r.url))
        yield page


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_the_dashboard_end_to_end(stack: Stack, page: object) -> None:
    p: object = page
    # Sign in.
    p.goto("/admin/")  # type: ignore[attr-defined]
    assert "/admin/login" in p.url  # type: ignore[attr-defined]
    p.fill("input[name=token]", stack.client.token)  # type: ignore[attr-defined]
    p.click("button[type=submit]")  # type: ignore[attr-defined]
    # The live worker appears on the overview.
    card = p.locator(f'.card[data-worker^="{stack.worker.name}@"]')  # type: ignore[attr-defined]
    card.locator(".state.online").wait_for()
    shot(p, "overview")

    # A job submitted over the API shows up and finishes on the open page, without a reload.
    p.goto("/admin/jobs")  # type: ignore[attr-defined]
    navigations = len([u for u in p.requests if u.endswith("/admin/jobs")])  # type: ignore[attr-defined]
    job = stack.client.submit({"n": 40})
    p.locator(f'tr[data-job="{job["id"]}"] .status.succeeded').wait_for()  # type: ignore[attr-defined]
    assert len([u for u in p.requests if u.endswith("/admin/jobs")]) == navigations  # type: ignore[attr-defined]
    shot(p, "jobs")

    # A job submitted from the dashboard itself: its page follows it to the end.
    p.select_option("#new-job select[name=kind]", "stairs")  # type: ignore[attr-defined]
    p.fill("#new-job input[name=params]", '{"n": 42, "modulus": 1000}')  # type: ignore[attr-defined]
    p.click("#new-job button[type=submit]")  # type: ignore[attr-defined]
    p.locator("#status.succeeded").wait_for()  # type: ignore[attr-defined]
    assert '"value": "' + str(433494437 % 1000) + '"' in p.inner_text("#result")  # type: ignore[attr-defined]

    # Cancel a queued job: the one worker process is busy with a long one.
    busy = stack.client.submit(LONG)
    stack.client.wait(busy["id"], "running")
    queued = stack.client.submit({"n": 41})
    p.goto(f"/admin/jobs/{queued['id']}")  # type: ignore[attr-defined]
    p.once("dialog", lambda dialog: dialog.accept())  # type: ignore[attr-defined]
    p.click("#cancel")  # type: ignore[attr-defined]
    p.locator("#status.cancelled").wait_for()  # type: ignore[attr-defined]
    assert stack.client.job(queued["id"])["status"] == "cancelled"
    stack.client.call("POST", f"/api/v1/jobs/{busy['id']}/cancel")

    # Retry a failed job: this one ran past a 3 s limit.
    short = create_app(dataclasses.replace(stack.settings, time_limits={"stairs": 3}))
    headers = {"Authorization": f"Bearer {stack.client.token}"}
    failed = short.test_client().post("/api/v1/jobs", json={"kind": "stairs", "params": LONG},
                                      headers=headers).get_json()  # fmt: skip
    short.extensions["ladder"].db.engine.dispose()
    assert stack.client.wait(failed["id"])["status"] == "failed"
    p.goto(f"/admin/jobs/{failed['id']}")  # type: ignore[attr-defined]
    p.locator("#status.failed").wait_for()  # type: ignore[attr-defined]
    p.once("dialog", lambda dialog: dialog.accept())  # type: ignore[attr-defined]
    p.click("#retry")  # type: ignore[attr-defined]
    # The page draws the run's progress as it comes (Kitamasa's squarings), then its end.
    partway = "() => [+document.querySelector('#progress').ariaValueNow].some((v) => v % 100 > 0)"
    p.wait_for_function(partway, timeout=120_000)  # type: ignore[attr-defined]
    p.locator("#status.succeeded").wait_for(timeout=120_000)  # type: ignore[attr-defined]
    assert p.get_attribute("#progress", "aria-valuenow") == "100"  # type: ignore[attr-defined]
    again = stack.client.job(failed["id"])
    assert again["status"] == "succeeded" and again["attempts"] == 1
    shot(p, "retried")

    p.goto("/admin/workers")  # type: ignore[attr-defined]
    p.locator(f'tr[data-worker^="{stack.worker.name}@"]').wait_for()  # type: ignore[attr-defined]
    shot(p, "workers")
    elsewhere = [u for u in p.requests if not u.startswith(stack.base_url)]  # type: ignore[attr-defined]
    assert elsewhere == []


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_jobs_page_shows_its_webhooks_attempts(stack: Stack, page: object) -> None:
    p: object = page
    p.goto("/admin/login")  # type: ignore[attr-defined]
    p.fill("input[name=token]", stack.client.token)  # type: ignore[attr-defined]
    p.click("button[type=submit]")  # type: ignore[attr-defined]
    with Receiver([(500, {}), (200, {})]) as receiver:
        job = stack.client.submit({"n": 9}, callback_url=receiver.url("/hook"))
        p.goto(f"/admin/jobs/{job['id']}")  # type: ignore[attr-defined]
        p.locator("#webhook-state.webhook-delivered").wait_for()  # type: ignore[attr-defined]
    assert p.inner_text("#webhook-url") == receiver.url("/hook")  # type: ignore[attr-defined]
    rows = p.locator("#webhook-attempts tbody tr").all_inner_texts()  # type: ignore[attr-defined]
    assert len(rows) == 2 and "HTTP 500" in rows[0] and "200" in rows[1]
    shot(p, "job-webhook")
    plain = stack.client.wait(stack.client.submit({"n": 8})["id"])
    p.goto(f"/admin/jobs/{plain['id']}")  # type: ignore[attr-defined]
    p.locator("#status.succeeded").wait_for()  # type: ignore[attr-defined]
    assert p.locator("#webhook-box").is_hidden()  # type: ignore[attr-defined]
