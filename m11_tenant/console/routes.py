"""The console's pages: sign-in, tenant list, config form, preview, history, audit.

Every read and write goes through the app's repository (``ctx.repo``) and every refusal
through the web kernel's checks, the API's too: :func:`authorize_tenant` (403 plus a
``denied`` audit line), the same per-key rate limits, the one
:func:`~m11_tenant.text.reason_problem` rule (``check_reason``), and the validation inside
``update_config`` / ``apply_update``. Errors become HTML pages or messages next to the
field instead of the API's JSON; the status codes are the API's.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from m11_tenant.console import forms, views
from m11_tenant.console.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    login_nonce_ok,
    new_login_nonce,
)
from m11_tenant.errors import (
    ConfigValidationError,
    FieldError,
    PlatformOwnedFieldError,
    StoreUnavailableError,
    TenantConfigError,
    VersionConflictError,
)
from m11_tenant.repository import ResolvedConfig
from m11_tenant.schema import PLATFORM_OWNED_FIELDS, TenantConfig, apply_update, load_catalog
from m11_tenant.store import HistoryEntry
from m11_tenant.text import MAX_REASON_CHARS, check_reason, check_text
from m11_tenant.web.auth import Principal, authorize_tenant
from m11_tenant.web.body import media_type, read_body
from m11_tenant.web.change_safety import (
    DEFAULT_PREVIEW_QUESTION,
    check_replay,
    explain_tenant,
    run_replay,
)
from m11_tenant.web.context import ApiContext, client_address, path_tenant
from m11_tenant.web.errors import HttpError, to_http

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
FORM_TYPE = "application/x-www-form-urlencoded"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
STATIC = {p.name: p.read_bytes() for p in sorted((HERE / "static").iterdir())
          if p.suffix in STATIC_TYPES}
STATIC_VERSION = {name: hashlib.sha256(body).hexdigest()[:12] for name, body in STATIC.items()}

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True)
TEMPLATES.globals.update(
    static=lambda name: f"/console/static/{name}?v={STATIC_VERSION[name]}",
    shown=views.shown, specs=forms.SPECS, groups=forms.GROUPS,
    platform_owned_fields=PLATFORM_OWNED_FIELDS, max_reason_chars=MAX_REASON_CHARS)


class SignInRequired(Exception):
    """No valid session cookie: the page answers with a redirect to the sign-in form."""


class ConsoleRoute(APIRoute):
    """Routes whose refusals are HTML pages: the app's handlers would answer JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return RedirectResponse("/console/login", status_code=303)
            except RequestValidationError as exc:
                where = ", ".join(sorted({str(e["loc"][-1]) for e in exc.errors()}))
                return error_page(request, HttpError(
                    422, "validation_error", f"invalid request parameter(s): {where}"))
            except TenantConfigError as exc:
                return error_page(request, to_http(exc))

        return html_errors


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@dataclass(frozen=True)
class ConsoleState:
    """What the console keeps on ``app.state.console``: the sessions, kept in the store."""

    sessions: Sessions


# ---- plumbing ------------------------------------------------------------------------------
def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def _sessions(request: Request) -> Sessions:
    return request.app.state.console.sessions


def _session_of(request: Request) -> Session | None:
    return _sessions(request).read(request.cookies.get(SESSION_COOKIE))


def signed_in(request: Request) -> Session:
    session = _session_of(request)
    if session is None:
        raise SignInRequired
    return session


def render(request: Request, template: str, *, status: int = 200,
           session: Session | None = None, headers: Mapping[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    """A page with a per-response CSP nonce (the only inline CSS is the tenant's colours)."""
    nonce = secrets.token_urlsafe(12)
    html = TEMPLATES.get_template(template).render(
        session=session, nonce=nonce, who=_who(session),
        csrf=session.csrf if session else "",
        is_admin=bool(session and session.principal.is_admin), **context)
    return HTMLResponse(html, status_code=status, headers={**page_headers(nonce),
                                                           **(headers or {})})


def page_headers(nonce: str) -> dict[str, str]:
    """No third-party anything: scripts, styles, forms and frames from this app only.
    Images may be https (a tenant's logo URL), never plain http."""
    csp = ("default-src 'none'; script-src 'self'; "
           f"style-src 'self' 'nonce-{nonce}'; img-src 'self' https:; form-action 'self'; "
           "frame-ancestors 'none'; base-uri 'none'")
    return {"Content-Security-Policy": csp, "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY"}


def _who(session: Session | None) -> str:
    if session is None:
        return ""
    p = session.principal
    return "platform admin" if p.is_admin else f"{p.tenant_id} ({p.actor})"


def error_page(request: Request, err: HttpError) -> HTMLResponse:
    try:
        session = _session_of(request)
    except StoreUnavailableError:  # the page says the database is down; no session needed
        session = None
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict",
              413: "Too large", 415: "Wrong form encoding", 422: "Invalid input",
              429: "Slow down", 503: "Unavailable"}
    return render(request, "error.html", status=err.status, session=session,
                  title=titles.get(err.status, "Error"), error=err,
                  headers={k: v for k, v in err.headers.items() if k == "Retry-After"})


async def read_form(request: Request) -> list[tuple[str, str]]:
    """A urlencoded form body, capped like the API's JSON bodies."""
    media = media_type(request)
    if media != FORM_TYPE:
        raise HttpError(415, "unsupported_media_type",
                        f"console forms are posted as {FORM_TYPE} (got {media[:60] or 'none'})")
    body = await read_body(request, _ctx(request).settings.m11_max_body_bytes)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=forms.MAX_FORM_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "invalid_form", "the form could not be read: send UTF-8 "
                        f"text, at most {forms.MAX_FORM_FIELDS} fields") from None
    return forms.checked_pairs(pairs)


def _field(pairs: list[tuple[str, str]], name: str, default: str = "") -> str:
    return next((v for k, v in reversed(pairs) if k == name), default)


def require_csrf(request: Request, session: Session, pairs: list[tuple[str, str]]) -> None:
    if not Sessions.check_csrf(session, _field(pairs, "csrf")):
        raise HttpError(403, "csrf_failed", "this form is stale or was not sent by this "
                        "console; reload the page and submit again")


def _version_field(pairs: list[tuple[str, str]], name: str) -> int:
    number = forms.ascii_int(_field(pairs, name).strip())
    if number is None or number < 0:
        raise HttpError(400, "invalid_form", f"{name} must be a version number (got "
                        f"{_field(pairs, name)[:20]!r}); reload the page")
    return number


def _authorized(request: Request, session: Session, tenant_id: str, what: str) -> str:
    tid = path_tenant(tenant_id)
    authorize_tenant(_ctx(request).repo, session.principal, tid, what)
    return tid


async def posted_form(request: Request, tenant_id: str, what: str
                      ) -> tuple[Session, list[tuple[str, str]], str]:
    """What every tenant form post checks, in order: signed in, a readable form, its CSRF
    token, then the API's tenant check (403 and a ``denied`` audit line)."""
    session = signed_in(request)
    pairs = await read_form(request)
    require_csrf(request, session, pairs)
    return session, pairs, _authorized(request, session, tenant_id, what)


def _limit_writes(ctx: ApiContext, principal: Principal, kind: str, tid: str) -> None:
    """Tenant keys get the API's per-key limits in the console too; the admin has none."""
    if not principal.is_admin:
        ctx.limit(kind, tid, ctx.write_rate if kind == "config_write" else ctx.preview_rate)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# ---- sign in / out -------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request) -> Response:
    if _session_of(request) is not None:
        return _see_other("/console")
    return _login_page(request)


def _login_page(request: Request, *, error: str = "", status: int = 200) -> HTMLResponse:
    nonce = new_login_nonce()
    page = render(request, "login.html", status=status, login_nonce=nonce, error=error)
    page.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/console/login", httponly=True,
                    samesite="strict", secure=request.url.scheme == "https")
    return page


@router.post("/login")
async def login(request: Request) -> Response:
    pairs = await read_form(request)
    if not login_nonce_ok(request.cookies.get(LOGIN_COOKIE), _field(pairs, "login_nonce")):
        return _login_page(request, status=403, error="The sign-in form expired or was not "
                           "sent by this console (are cookies on?). Try again.")
    key = _field(pairs, "key").strip()
    try:
        principal = _ctx(request).auth.authenticate(f"Bearer {key}" if key else None,
                                                    client_address(request))
    except HttpError as exc:
        if exc.status == 429:
            page = _login_page(request, status=429, error=f"Too many failed sign-ins from "
                               f"this address: {exc.message}.")
            page.headers.update({k: v for k, v in exc.headers.items() if k == "Retry-After"})
            return page
        return _login_page(request, status=401, error="That key is not the admin key or a "
                           "tenant key of this server. Check it and try again.")
    sessions = _sessions(request)
    session = await run_in_threadpool(sessions.issue, principal)
    response = _see_other("/console")
    response.set_cookie(SESSION_COOKIE, session.token, max_age=sessions.lifetime,
                        path="/console", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = signed_in(request)
    require_csrf(request, session, await read_form(request))
    await run_in_threadpool(_sessions(request).end, session)
    response = _see_other("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# ---- static ---------------------------------------------------------------------------------
@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise HttpError(404, "not_found", f"no console asset {name[:60]!r}")
    return Response(STATIC[name], media_type=STATIC_TYPES[Path(name).suffix], headers={
        "Cache-Control": "public, max-age=86400", "ETag": f'"{STATIC_VERSION[name]}"',
        "X-Content-Type-Options": "nosniff"})


# ---- tenant list ---------------------------------------------------------------------------
@router.get("/")
def trailing_slash() -> Response:
    """``/console/`` -> ``/console``, with a relative ``Location`` (the app's automatic
    slash redirects are off: they would build an absolute URL from the Host header)."""
    return _see_other("/console")


@router.get("")
def tenant_list(request: Request,
                q: Annotated[str, Query(max_length=64)] = "",
                plan: Annotated[str, Query(max_length=32)] = "",
                page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> Response:
    session = signed_in(request)
    if not session.principal.is_admin:
        return _see_other(f"/console/t/{session.principal.tenant_id}")
    check_text(q, "q")
    ctx, catalog = _ctx(request), load_catalog()
    if plan and plan not in catalog.plans:
        raise HttpError(422, "validation_error", f"unknown plan {plan[:32]!r}; choose one of: "
                        f"{', '.join(catalog.plans)}")
    needle = q.strip().lower()
    ids = [t for t in ctx.repo.iter_tenants() if needle in t]
    if plan:
        ids = [r.tenant_id for r in ctx.repo.get_many(ids)
               if r.config.get("plan", TenantConfig().plan) == plan]
    shown_ids = ids[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    records = {r.tenant_id: r for r in ctx.repo.get_many(shown_ids)} if shown_ids else {}
    rows = [{"tenant_id": t, "record": records.get(t),
             "plan": (records[t].config.get("plan") if t in records else "")} for t in shown_ids]
    openable = ""
    if needle and not ids:
        try:
            openable = path_tenant(needle)
        except TenantConfigError:
            openable = ""
    return render(request, "tenants.html", session=session, rows=rows, q=q, plan=plan,
                  plans=list(catalog.plans), page=page, total=len(ids),
                  pages=max(1, -(-len(ids) // PAGE_SIZE)), stored=ctx.repo.count_tenants(),
                  openable=openable, query=lambda **kw: _query(q=q, plan=plan, **kw))


def _query(**params: Any) -> str:
    return "?" + "&".join(f"{k}={quote(str(v))}" for k, v in params.items() if v not in ("", None))


# ---- the config form -----------------------------------------------------------------------
def _config_page(request: Request, session: Session, tid: str, current: ResolvedConfig, *,
                 values: Mapping[str, Any], expected_version: int, status: int = 200,
                 errors: list[FieldError] | None = None, notice: str = "",
                 banner: HttpError | None = None, conflict: Mapping[str, Any] | None = None,
                 preview: Mapping[str, Any] | None = None, question: str = "",
                 reason: str = "", replay: str = "") -> HTMLResponse:
    headers = {k: v for k, v in (banner.headers if banner else {}).items() if k == "Retry-After"}
    # Inputs a post left out show the stored value rather than an empty box.
    values = {**forms.values_of(current.config.model_dump()), **values}
    catalog = load_catalog()
    brand = (preview["config"] if preview else current.config).branding
    shown_plan = str(values.get("plan") or current.config.plan)
    if shown_plan not in catalog.plans:
        shown_plan = current.config.plan
    return render(
        request, "tenant.html", status=status, session=session, headers=headers, tid=tid,
        tab="config",
        current=current, values=values, expected_version=expected_version,
        errors=errors or [], by_field=forms.errors_by_field(errors or []), notice=notice,
        banner=banner, conflict=conflict, preview=preview,
        question=question or DEFAULT_PREVIEW_QUESTION, reason=reason, replay=replay,
        variable_rows=forms.variable_rows(values), plans=list(catalog.plans),
        models=list(catalog.models), plan_models=forms.plan_models(catalog),
        allowed=set(catalog.plan(shown_plan).allowed_models),
        cap=catalog.plan(shown_plan).max_tokens_cap, brand=brand,
        cost_alerts=views.latest_month(_ctx(request).repo.cost_alerts(tid, limit=10)),
        brand_text=views.readable_text(brand.primary_color),
        answer_text=views.readable_text(brand.secondary_color),
        locked=_ctx(request).repo.is_locked(tid))


@router.get("/t/{tenant_id}")
def config_page(request: Request, tenant_id: str,
                saved: Annotated[int | None, Query(ge=1, le=10**12)] = None,
                rolled_back: Annotated[int | None, Query(ge=1, le=10**12)] = None) -> Response:
    session = signed_in(request)
    tid = _authorized(request, session, tenant_id, "read the config")
    current = _ctx(request).repo.get_record(tid)
    notice = ""
    if saved and rolled_back:
        notice = f"Rolled back to version {rolled_back}: saved as version {saved}."
    elif saved:
        notice = f"Saved version {saved}."
    return _config_page(request, session, tid, current,
                        values=forms.values_of(current.config.model_dump()),
                        expected_version=current.version, notice=notice)


@router.post("/t/{tenant_id}")
async def save_config(request: Request, tenant_id: str) -> Response:
    session, pairs, tid = await posted_form(request, tenant_id, "change the config")
    ctx, principal = _ctx(request), session.principal
    form = forms.parse_config_form(pairs)
    expected = _version_field(pairs, "expected_version")
    reason = _field(pairs, "reason").strip()
    question = _field(pairs, "question")
    errors = list(form.errors)
    if not reason:
        errors.append(FieldError("reason", "say why: the reason goes into the audit log",
                                 "missing"))
    try:
        check_reason(reason)
    except ConfigValidationError as exc:
        errors += exc.errors
    current = await run_in_threadpool(ctx.repo.get_record, tid)
    page = {"values": form.values, "question": question, "reason": reason}
    if errors:  # show every problem at once: the schema's too, not only the form's
        try:
            apply_update(current.config, form.updates, merge=True)
        except ConfigValidationError as exc:
            errors += exc.errors
        return _refused(request, session, tid, current, errors, expected, page)
    try:
        _limit_writes(ctx, principal, "config_write", tid)
        resolved = await run_in_threadpool(lambda: ctx.repo.update_config(
            tid, form.updates, True, expected_version=expected, actor=principal.actor,
            role=principal.role, reason=reason))
    except ConfigValidationError as exc:
        return _refused(request, session, tid, current, exc.errors, expected, page)
    except VersionConflictError as exc:
        latest = await run_in_threadpool(ctx.repo.get_record, tid)
        history = await run_in_threadpool(ctx.repo.get_history, tid)
        values, conflict = _conflict(exc, latest, history, form.values)
        return _config_page(request, session, tid, latest, status=409,
                            expected_version=exc.actual, conflict=conflict,
                            **{**page, "values": values})
    except TenantConfigError as exc:  # rate limit, database down, ...: keep the edit
        err = to_http(exc)
        return _config_page(request, session, tid, current, status=err.status, banner=err,
                            expected_version=expected, **page)
    ctx.metrics.config_changed(tid, "update")
    return _see_other(f"/console/t/{tid}?saved={resolved.version}")


def _refused(request: Request, session: Session, tid: str, current: ResolvedConfig,
             errors: list[FieldError], expected: int, page: Mapping[str, Any]) -> HTMLResponse:
    _ctx(request).metrics.validation_error(tid)
    return _config_page(request, session, tid, current, status=422, errors=errors,
                        expected_version=expected, **page)


def _conflict(exc: VersionConflictError, latest: ResolvedConfig, history: list[HistoryEntry],
              typed: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form to show after a stale save, and what to say about it: what the other
    writer changed (their base -> now), and the user's own changes, carried over onto the
    latest version (see :func:`forms.rebase`)."""
    base = next((h.config for h in history if h.version == exc.expected), None)
    now = latest.config.model_dump()
    info: dict[str, Any] = {"expected": exc.expected, "actual": exc.actual,
                            "by": latest.updated_by, "at": latest.updated_at,
                            "base_kept": base is not None, "theirs": [], "mine": []}
    if base is None:  # too old to tell their changes from the user's: keep the whole form
        return dict(typed), info
    values, changed = forms.rebase(typed, base, now)
    theirs = views.diff_rows(base, now)
    touched = {name for name, _old, _new in theirs}
    now_values = forms.values_of(now)
    info["theirs"] = theirs
    info["mine"] = [(name + (" (changed by both)" if name in touched else ""),
                     forms.form_text(now_values[name]), forms.form_text(typed[name]))
                    for name in changed]
    return values, info


@router.post("/t/{tenant_id}/preview")
async def preview_config(request: Request, tenant_id: str) -> Response:
    session, pairs, tid = await posted_form(request, tenant_id, "preview a config")
    ctx = _ctx(request)
    form = forms.parse_config_form(pairs)
    expected = _version_field(pairs, "expected_version")
    question = _field(pairs, "question").strip() or DEFAULT_PREVIEW_QUESTION
    replay_text = _field(pairs, "replay").strip()
    page = {"values": form.values, "question": question,
            "reason": _field(pairs, "reason").strip(), "replay": replay_text}
    current = await run_in_threadpool(ctx.repo.get_record, tid)
    errors = list(form.errors)
    try:
        current, proposed = await run_in_threadpool(
            lambda: ctx.repo.propose(tid, form.updates, role=session.principal.role))
    except ConfigValidationError as exc:
        errors += exc.errors
    except PlatformOwnedFieldError as exc:
        return _config_page(request, session, tid, current, status=403, banner=to_http(exc),
                            expected_version=expected, **page)
    try:
        number = forms.ascii_int(replay_text)
        count = check_replay(replay_text if number is None else number) \
            if replay_text else None
    except ConfigValidationError as exc:
        errors += exc.errors
    if errors:
        return _refused(request, session, tid, current, errors, expected, page)
    try:
        _limit_writes(ctx, session.principal, "preview", tid)
        result = await ctx.pipeline.arun(proposed, question, tenant_id=tid)
    except ConfigValidationError as exc:  # the question itself (empty, too long)
        errors = [FieldError("question", e.message, e.type) for e in exc.errors]
        return _refused(request, session, tid, current, errors, expected, page)
    except TenantConfigError as exc:
        err = to_http(exc)
        return _config_page(request, session, tid, current, status=err.status, banner=err,
                            expected_version=expected, **page)
    replayed = None
    if count is not None:
        try:
            replayed = await run_in_threadpool(
                lambda: run_replay(ctx, session.principal, tid, current, proposed, count,
                                   reason=page["reason"] or None))
        except ConfigValidationError as exc:  # nothing logged
            return _refused(request, session, tid, current, exc.errors, expected, page)
    preview = {"config": proposed, "result": result, "replay": replayed,
               "diff": views.diff_rows(current.config.model_dump(), proposed.model_dump())}
    return _config_page(request, session, tid, current, expected_version=expected,
                        preview=preview, **page)


# ---- history and rollback -------------------------------------------------------------------
@router.get("/t/{tenant_id}/history")
def history_page(request: Request, tenant_id: str,
                 a: Annotated[int | None, Query(ge=1, le=10**12)] = None,
                 b: Annotated[int | None, Query(ge=1, le=10**12)] = None) -> Response:
    session = signed_in(request)
    tid = _authorized(request, session, tenant_id, "read the history")
    return _history_page(request, session, tid, a, b)


def _history_page(request: Request, session: Session, tid: str, a: int | None, b: int | None,
                  *, status: int = 200, banner: HttpError | None = None) -> HTMLResponse:
    ctx = _ctx(request)
    entries = ctx.repo.get_history(tid)
    kept = {e.version: e for e in entries}
    b = b if b is not None else (entries[0].version if entries else None)
    a = a if a is not None else (entries[1].version if len(entries) > 1 else b)
    missing = [v for v in (a, b) if v is not None and v not in kept]
    if missing:
        banner = banner or HttpError(404, "not_found", f"version {missing[0]} is not kept; "
                                     f"kept versions: {', '.join(map(str, sorted(kept)))}")
    rows = [] if missing or a is None or b is None else views.diff_rows(kept[a].config,
                                                                         kept[b].config)
    current = ctx.repo.get_record(tid)
    retry = {k: v for k, v in (banner.headers if banner else {}).items() if k == "Retry-After"}
    return render(request, "history.html", status=status, session=session, headers=retry, tid=tid,
                  tab="history", entries=entries, a=a, b=b, rows=rows, missing=missing,
                  current=current, banner=banner)


@router.post("/t/{tenant_id}/rollback")
async def rollback(request: Request, tenant_id: str) -> Response:
    session, pairs, tid = await posted_form(request, tenant_id, "roll back the config")
    ctx, principal = _ctx(request), session.principal
    version = _version_field(pairs, "version")
    expected = _version_field(pairs, "expected_version")
    reason = _field(pairs, "reason").strip() or None
    try:
        check_reason(reason)
        _limit_writes(ctx, principal, "config_write", tid)
        resolved = await run_in_threadpool(lambda: ctx.repo.rollback(
            tid, version, expected_version=expected, actor=principal.actor,
            role=principal.role, reason=reason))
    except VersionConflictError as exc:
        moved = HttpError(409, "version_conflict", f"{exc} Nothing was rolled back: compare "
                          f"below and roll back again if you still want version {version}.")
        return await run_in_threadpool(_history_page, request, session, tid, version,
                                       exc.actual, status=409, banner=moved)
    except TenantConfigError as exc:
        err = to_http(exc)
        return await run_in_threadpool(_history_page, request, session, tid, None, None,
                                       status=err.status, banner=err)
    ctx.metrics.config_changed(tid, "rollback")
    return _see_other(f"/console/t/{tid}?saved={resolved.version}&rolled_back={version}")


# ---- explain -------------------------------------------------------------------------------
@router.get("/t/{tenant_id}/explain")
def explain_page(request: Request, tenant_id: str) -> Response:
    session = signed_in(request)
    tid = _authorized(request, session, tenant_id, "explain the config")
    explained = explain_tenant(_ctx(request), tid)
    return render(request, "explain.html", session=session, tid=tid, tab="explain",
                  explained=explained,
                  rows=[(name, views.shown(item["value"]), item)
                        for name, item in explained["fields"].items()])


# ---- audit log -----------------------------------------------------------------------------
@router.get("/t/{tenant_id}/audit")
def audit_page(request: Request, tenant_id: str,
               page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> Response:
    session = signed_in(request)
    tid = _authorized(request, session, tenant_id, "read the audit log")
    entries = _ctx(request).repo.get_audit_log(tid, limit=PAGE_SIZE + 1,
                                               offset=(page - 1) * PAGE_SIZE)
    return render(request, "audit.html", session=session, tid=tid, tab="audit",
                  entries=[(e, [(field, views.shown(old), views.shown(new))
                                for field, (old, new) in e.diff.items()])
                           for e in entries[:PAGE_SIZE]],
                  page=page, more=len(entries) > PAGE_SIZE)
