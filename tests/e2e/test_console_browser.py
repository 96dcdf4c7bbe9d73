"""The console in headless Chromium against a live server: sign in, edit and save, see a
validation error, see a conflict, roll back, preview in the tenant's branding, replay, explain.

Each main page is written to ``test-artifacts/console/`` as a screenshot for review.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from m11_tenant.store import Change, LoggedQuery
from m11_tenant.web.auth import hash_key, new_tenant_key

pytestmark = pytest.mark.browser

NARROW = {"width": 390, "height": 844}
LOGO_URL = "https://logo.e2e.invalid/acme.svg"
LOGO_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="28">'
            b'<rect width="64" height="28" fill="#222"/></svg>')


def new_tenant(live_server, prefix: str, **config) -> str:
    tid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    live_server.repo.update_config(tid, config, actor="seed", reason="e2e seed")
    return tid


def sign_in(page, live_server, key: str | None = None) -> None:
    """Keyboard only: the key field has focus on load, Enter submits.

    Chromium applies ``autofocus`` on a rendering step after the load event, so typing
    right after ``goto`` can land on the page body (a cold first run did): wait for the
    focus, then type; wait for the navigation Enter starts, then for the page it lands on.
    """
    page.goto(live_server.url("/console"))
    assert page.url.endswith("/console/login")
    expect(page.locator("#key")).to_be_focused()
    page.keyboard.type(key or live_server.admin_key)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    assert "/console/login" not in page.url


def shoot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def only_loopback(page, allowed: tuple[str, ...] = ()) -> None:
    hosts = {urlsplit(url).hostname for url in page.requested
             if not url.startswith(("data:", "about:"))}
    assert hosts - {"127.0.0.1", *allowed} == set(), page.requested


def test_sign_in_search_and_open_a_tenant(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-list", plan="pro", model="gpt-4")
    new_tenant(live_server, "e2e-other", plan="free")
    page.goto(live_server.url("/console/login"))
    shoot(page, artifacts, "01-sign-in")
    page.fill("#key", "not-a-key")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_contain_text("is not the admin key")

    sign_in(page, live_server)
    page.fill("#q", tid[:-2])
    page.select_option("#plan", "pro")
    with page.expect_navigation():  # count() does not wait: be on the results page first
        page.click("button:has-text('Search')")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1
    assert "gpt-4" in rows.first.inner_text()
    page.fill("#q", "e2e-")
    page.select_option("#plan", "")
    with page.expect_navigation():
        page.click("button:has-text('Search')")
    shoot(page, artifacts, "02-tenant-list")
    page.set_viewport_size(NARROW)
    shoot(page, artifacts, "02-tenant-list-narrow")
    page.click(f"a:has-text('{tid}')")
    expect(page.locator("h1")).to_have_text(tid)
    only_loopback(page)


def test_edit_and_save_with_a_reason(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-save", plan="free", temperature=0.7)
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    # The model list follows the plan: opus only once the plan allows it.
    opus = page.locator("#f-model option[value='claude-3-opus']")
    assert opus.is_disabled()
    page.select_option("#f-plan", "enterprise")
    assert not opus.is_disabled()
    page.select_option("#f-model", "claude-3-opus")
    # The slider is keyboard-operable and writes into the number box.
    page.fill("#f-temperature", "0.5")
    page.dispatch_event("#f-temperature", "input")
    page.focus("[data-sync='f-temperature']")
    page.keyboard.press("ArrowRight")
    assert page.input_value("#f-temperature") == "0.55"
    page.fill("#f-reason", "upgrade to enterprise")
    page.click("#save-button")
    expect(page.locator("#notice")).to_have_text("Saved version 2.")
    stored = live_server.repo.get_record(tid)
    assert (stored.version, stored.config.plan, stored.config.model,
            stored.config.temperature) == (2, "enterprise", "claude-3-opus", 0.55)
    assert live_server.repo.get_audit_log(tid)[0].reason == "upgrade to enterprise"
    shoot(page, artifacts, "03-tenant-config")
    page.set_viewport_size(NARROW)
    shoot(page, artifacts, "03-tenant-config-narrow")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], "the page scrolls sideways at phone width"
    only_loopback(page)


def test_a_validation_error_is_shown_next_to_the_field_and_keeps_the_edit(
        page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-invalid", plan="free")
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    page.fill("#f-max-tokens", "3000")
    page.fill("#f-top-k", "7")
    page.fill("#f-reason", "longer answers")
    page.click("#save-button")
    assert "nothing was saved" in page.inner_text("#error-summary")
    expect(page.locator("#error-summary")).to_be_focused()
    assert "exceeds the free plan's cap of 1000" in page.inner_text("#f-max-tokens-error")
    assert page.get_attribute("#f-max-tokens", "aria-invalid") == "true"
    assert (page.input_value("#f-max-tokens"), page.input_value("#f-top-k"),
            page.input_value("#f-reason")) == ("3000", "7", "longer answers")
    assert live_server.repo.get_record(tid).version == 1
    shoot(page, artifacts, "04-validation-error")
    # The summary links move the keyboard to the field.
    page.click("#error-summary a[href='#f-max-tokens']")
    expect(page.locator("#f-max-tokens")).to_be_focused()
    # Fix that one, break another: the new message sits next to its own field.
    page.fill("#f-max-tokens", "900")
    page.fill("#f-branding-primary-color", "#12")
    page.click("#save-button")
    assert "#RRGGBB" in page.inner_text("#f-branding-primary-color-error")
    assert page.locator("#f-max-tokens-error").count() == 0
    assert page.input_value("#f-branding-primary-color") == "#12"
    page.fill("#f-branding-primary-color", "#123456")
    page.click("#save-button")
    expect(page.locator("#notice")).to_have_text("Saved version 2.")
    stored = live_server.repo.get_record(tid).config
    assert (stored.max_tokens, stored.top_k, stored.branding.primary_color) == (900, 7, "#123456")


def test_a_stale_save_is_explained_and_the_edit_survives(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-stale", top_k=5, alpha=0.5)
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    page.fill("#f-top-k", "9")
    page.fill("#f-reason", "more passages")
    # Someone else saves while the form is open.
    live_server.repo.update_config(tid, {"alpha": 0.9}, actor="key:colleague",
                                   role="tenant", reason="semantic first")
    page.click("#save-button")
    conflict = page.locator("#conflict")
    assert "Someone else saved first" in conflict.inner_text()
    assert "key:colleague saved version 2" in conflict.inner_text()
    assert re.search(r"alpha\s+0\.5\s+0\.9", conflict.inner_text())
    assert re.search(r"top_k\s+5\s+9", conflict.inner_text())
    # The edit is carried over onto their version: top_k as typed, alpha as they saved it.
    assert page.input_value("#f-top-k") == "9"
    assert page.input_value("#f-alpha") == "0.9"
    assert page.input_value("#f-reason") == "more passages"
    assert live_server.repo.get_record(tid).config.top_k == 5
    shoot(page, artifacts, "05-conflict")
    # Saving again, knowingly, stores the edit on top of version 2 without undoing theirs.
    page.click("#save-button")
    expect(page.locator("#notice")).to_have_text("Saved version 3.")
    stored = live_server.repo.get_record(tid).config
    assert (stored.top_k, stored.alpha) == (9, 0.9)


def test_history_diff_and_rollback(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-history", temperature=0.7)
    live_server.repo.update_config(tid, {"temperature": 0.2, "top_k": 8}, reason="sharper")
    live_server.repo.update_config(tid, {"prompt_template": "Be brief.\n{context}\n{query}"},
                                   reason="shorter prompt")
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    page.click("nav.tabs a:has-text('History')")
    page.select_option("#a", "1")
    page.select_option("#b", "3")
    page.click("button:has-text('Compare')")
    diff = page.locator("table.diff")
    text = diff.inner_text()
    assert "3 field(s) differ between version 1 and version 3" in text
    assert re.search(r"temperature\s+0\.7\s+0\.2", text)
    shoot(page, artifacts, "06-history")
    page.set_viewport_size(NARROW)
    shoot(page, artifacts, "06-history-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("button[data-version='1']")
    expect(page.locator("#notice")).to_have_text("Rolled back to version 1: saved as version 4.")
    stored = live_server.repo.get_record(tid)
    assert (stored.version, stored.config.temperature, stored.config.top_k) == (4, 0.7, 5)
    page.click("nav.tabs a:has-text('Audit log')")
    first = page.locator("#audit tbody tr").first.inner_text()
    assert "rollback" in first and "rollback to version 1" in first
    shoot(page, artifacts, "07-audit")


def test_preview_answers_in_the_tenant_branding_without_saving(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-brand", branding={"primary_color": "#1F6FEB",
                                                         "logo_url": LOGO_URL})
    page.route(LOGO_URL, lambda route: route.fulfill(status=200, body=LOGO_SVG,
                                                     content_type="image/svg+xml"))
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    page.fill("#f-branding-primary-color", "#FF6B35")
    page.fill("#f-branding-secondary-color", "#FFF4EC")
    page.fill("#f-question", "How do I roll back a tenant's config?")
    page.keyboard.press("Enter")  # Enter in a field previews; it never saves
    answer = page.locator("#preview-answer")
    assert len(answer.inner_text().strip()) > 20
    head = page.locator(".chat-head")
    assert head.evaluate("e => getComputedStyle(e).backgroundColor") == rgb("#FF6B35")
    assert answer.evaluate("e => getComputedStyle(e).backgroundColor") == rgb("#FFF4EC")
    logo = page.locator(".chat-head img.logo")
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 64
    assert "branding.primary_color" in page.inner_text("#preview")
    assert page.input_value("#f-branding-primary-color") == "#FF6B35"
    assert live_server.repo.get_record(tid).version == 1  # a preview writes nothing
    page.locator("#preview").scroll_into_view_if_needed()
    shoot(page, artifacts, "08-preview")
    page.set_viewport_size(NARROW)
    page.locator("#preview").screenshot(path=str(artifacts / "08-preview-narrow.png"))
    only_loopback(page, allowed=("logo.e2e.invalid",))


def test_a_tenant_key_sees_only_its_own_tenant(page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-own")
    other = new_tenant(live_server, "e2e-theirs")
    key_id, key = new_tenant_key()
    live_server.repo.store.add_api_key(tid, key_id, hash_key(key),
                                       Change("admin", "admin", "key_created"))
    sign_in(page, live_server, key)
    assert page.url.endswith(f"/console/t/{tid}")
    assert page.locator("a:has-text('All tenants')").count() == 0
    response = page.goto(live_server.url(f"/console/t/{other}"))
    assert response.status == 403
    assert "may not read the config" in page.inner_text("main")
    shoot(page, artifacts, "09-forbidden")
    page.goto(live_server.url("/console"))
    assert page.url.endswith(f"/console/t/{tid}")
    # Counted under the caller's own tenant, never written into the other tenant's log.
    assert live_server.repo.get_audit_log(tid)[0].action == "denied"
    assert all(e.action != "denied" for e in live_server.repo.get_audit_log(other))
    with page.expect_navigation():
        page.click("button:has-text('Sign out')")
    assert page.url.endswith("/console/login")
    page.goto(live_server.url(f"/console/t/{tid}"))
    assert page.url.endswith("/console/login")


def test_preview_panel_replays_logged_questions_and_explain_names_the_origin(
        page, live_server, artifacts):
    tid = new_tenant(live_server, "e2e-replay", query_log_size=10)
    for question in ("How do I roll back a tenant's config?", "What is hybrid search?"):
        live_server.repo.store.append_query_log(
            LoggedQuery(tid, question, (), "gpt-3.5-turbo", 0, 0, 0.0), keep=10)
    sign_in(page, live_server)
    page.goto(live_server.url(f"/console/t/{tid}"))
    page.fill("#f-top-k", "8")
    page.fill("#f-replay", "2")
    with page.expect_navigation():
        page.click("#preview-button")
    report = page.locator("#replay-report")
    assert "Replay of 2 logged questions (offline)" in report.inner_text()
    assert page.locator("#replay-questions tbody tr").count() == 2
    assert live_server.repo.get_record(tid).version == 1  # a replay writes nothing
    report.scroll_into_view_if_needed()
    shoot(page, artifacts, "09-replay")
    page.click("nav.tabs a:has-text('Explain')")
    row = page.locator("#explain tr", has_text="query_log_size").inner_text()
    assert "set by seed in version 1" in row and "e2e seed" in row
    shoot(page, artifacts, "10-explain")
