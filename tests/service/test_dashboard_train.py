"""The dashboard's "Train now" button in Chromium against a real `leadscore serve --workers 2 --train-crm`:
the page starts a real training job, shows it running and its log, refuses a second job while it runs,
and once the job has retrained, passed the gate and promoted, shows the new version everywhere."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import browser_context
from lifecycle_support import make_crm_project, register_bad_model
from playwright.sync_api import expect
from server_support import SERVE, free_port, launch, wait_until_served
from service_support import ADMIN_KEY, SCORER_KEY, write_keys

from leadscore.artifacts.registry import Registry

JOB_TIMEOUT_MS = 240_000  # a real retraining cycle on a busy two-core machine

# Every text #versions-note shows, in order: the page overwrites it every 2 s while a job runs, so a
# short-lived message ("Training not started: ...") is only seen reliably by a MutationObserver.
RECORD_NOTES = """() => {
  window.__notes = [];
  const el = document.getElementById('versions-note');
  new MutationObserver(() => window.__notes.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""

JOB_FINISHED = """() => {
  const text = document.getElementById('versions-note').textContent;
  return text.startsWith('Training job ') && !text.endsWith(': running');
}"""


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("body[data-ready='true']", timeout=60_000)


def _served_everywhere(url: str, version: str, timeout: float = 60.0) -> None:
    wait_until_served(url, version, 2, timeout)
    for _ in range(8):  # whichever worker answers
        model = httpx.get(f"{url}/v1/model", headers={"X-API-Key": SCORER_KEY}, timeout=10).json()
        assert model["version"] == version


def _version_rows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#versions tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


@pytest.mark.slow
def test_train_now_runs_a_real_job_and_the_page_shows_the_new_model(tmp_path: Path) -> None:
    project = make_crm_project(tmp_path / "project")
    registry = tmp_path / "registry"
    bad = register_bad_model(project, registry)
    port = free_port()
    argv = [sys.executable, *SERVE, "--port", str(port), "--workers", "2", "--registry", str(registry),
            "--keys", str(write_keys(tmp_path / "keys.yaml")), "--rate-limit", "0", "--poll-interval", "0.2",
            "--train-crm", str(project / "data/raw"), "--train-params", str(project / "params.yaml")]
    srv = launch(argv, tmp_path / "serve.log", 2, registry, port=port)
    try:
        srv.wait_ready()
        url = srv.url
        _served_everywhere(url, bad)
        errors: list[tuple[str, str]] = []
        with browser_context(tmp_path / "profile") as context:
            page = context.new_page()
            page.on("console", lambda msg: errors.append((msg.text, msg.location.get("url", "")))
                    if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append((str(exc), "")))
            page.set_viewport_size({"width": 1280, "height": 900})
            _sign_in(page, url, ADMIN_KEY)
            before = _version_rows(page)
            assert [row[0] for row in before] == [bad] and "active" in before[0][3]
            assert page.locator("#model-facts dd").first.inner_text() == bad
            assert page.locator("#train-log").is_hidden() and page.locator("#train").is_enabled()
            page.evaluate(RECORD_NOTES)

            started_at = time.monotonic()
            with page.expect_response(lambda r: r.url == f"{url}/v1/model/train"
                                      and r.request.method == "POST") as first:
                page.get_by_role("button", name="Train now").click()
            assert first.value.status == 202, first.value.text()
            job = first.value.json()["job"]
            page.wait_for_selector(f"#versions-note:has-text('Training job {job}: running')", timeout=30_000)
            page.locator("#train-log").wait_for(state="visible", timeout=10_000)

            # one job at a time: the API, called from the page with its cookie, answers 409 ...
            again = page.evaluate("() => fetch('/v1/model/train', {method: 'POST',"
                                  " credentials: 'same-origin'}).then(async r => [r.status,"
                                  " (await r.json()).detail])")
            assert again[0] == 409 and f"training job {job} is running" in again[1], again
            # ... and a second click says so, while the first job goes on
            with page.expect_response(lambda r: r.url == f"{url}/v1/model/train"
                                      and r.request.method == "POST") as second:
                page.get_by_role("button", name="Train now").click()
            assert second.value.status == 409
            page.wait_for_function(
                "job => window.__notes.some(t => t.startsWith(`Training not started: training job ${job} "
                "is running`))", arg=job, timeout=10_000)

            page.wait_for_function(JOB_FINISHED, timeout=JOB_TIMEOUT_MS)
            seconds = time.monotonic() - started_at
            note = page.locator("#versions-note").inner_text()
            state = httpx.get(f"{url}/v1/model/train/{job}", headers={"X-API-Key": ADMIN_KEY},
                              timeout=30).json()
            assert note == f"Training job {job}: succeeded", (note, state)
            assert state["state"] == "succeeded" and state["result"]["action"] == "promoted", state
            new = state["result"]["version"]
            assert Registry(registry).active_version() == new != bad
            _served_everywhere(url, new)

            # the versions table and the model panel were reloaded when the job finished
            page.wait_for_function("n => document.querySelectorAll('#versions tbody tr').length === n",
                                   arg=len(before) + 1, timeout=10_000)
            after = _version_rows(page)
            assert [row[0] for row in after] == [new, bad], after
            assert "active" in after[0][3] and "active" not in after[1][3]
            assert page.get_by_role("button", name=f"Activate {bad}").is_enabled()
            # the model panel shows the version the page's workers serve now, not the bad model
            expect(page.locator("#model-facts dd").first).to_have_text(new, timeout=10_000)
            # with its five metrics on the held-back months (the note names any that is missing)
            expect(page.locator("#model-note")).to_have_text("")
            assert "n/a" not in (page.locator("#radar").text_content() or "n/a")
            assert not page.locator("#versions-note").evaluate("el => el.classList.contains('error')")
            notes = page.evaluate("() => window.__notes")
            assert notes[-1] == f"Training job {job}: succeeded"
            assert not any(t.startswith(f"Training job {job}: failed") for t in notes)
            log_text = page.locator("#train-log").inner_text()
            assert log_text.strip(), "the log panel is empty"
            print(f"train now: job {job} took {state['seconds']} s in its process, {seconds:.0f} s as the"
                  f" page saw it ({len(notes)} note updates)")
            page.screenshot(path=str(tmp_path / "dashboard-trained.png"), full_page=True)

        # Chromium logs each HTTP error a fetch gets as a console error: the two expected 409s only
        unexpected = [e for e in errors
                      if not ("status of 409" in e[0] and e[1] == f"{url}/v1/model/train")]
        assert unexpected == [], errors
        assert len(errors) - len(unexpected) == 2, errors
        assert ADMIN_KEY not in srv.text()
    finally:
        srv.stop()
