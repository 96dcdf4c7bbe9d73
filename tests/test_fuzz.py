"""Fuzzing every route of the app: arbitrary Unicode (lone surrogates, NUL, bidi controls),
huge numbers and odd bytes in paths, query strings, headers, cookies, JSON bodies and
console forms. Every answer must be a 2xx, 3xx or 4xx, and afterwards nothing invalid may
be stored (every config validates, every stored text follows the text policy).

The routes are read from the app itself, so an endpoint added later is fuzzed too.
Bounded: a fixed number of examples, derandomized (a failure reproduces), no deadline.
The SQLite run is in the default suite; the PostgreSQL run is marked ``services``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
from api_support import ADMIN, make_api
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m11_tenant.cache import ConfigCache
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import validate_config, validate_tenant_id
from m11_tenant.store import open_store
from m11_tenant.text import text_problem
from tests.conftest import REAL_DATABASE_URL, postgres_schema

EXAMPLES = 500
TENANTS = ("fuzz-a", "fuzz-b")
FIELD_NAMES = ("config", "merge", "reason", "tenants", "tenant_id", "query", "locked",
               "temperature", "top_k", "max_tokens", "model", "plan", "prompt_template",
               "prompt_variables", "branding", "logo_url", "primary_color", "csrf",
               "expected_version", "version", "key", "login_nonce", "var_name", "var_value",
               "question", "branding.logo_url", "rerank_top_n", "alpha")

# Every code point, surrogates and controls included, with the dangerous ones made likely.
any_char = st.one_of(st.characters(codec=None, categories=None),
                     st.sampled_from("\x00\x1b\x7f\x85\u202e\u2066\ud800\udfff²١\n\r\t\"\\{}"))
any_text = st.text(any_char, max_size=40)
big_number = st.integers(1, 6000).map(lambda n: "9" * n)
# Mostly real tenants, so a request gets past the tenant check to the code behind it.
path_text = st.one_of(*[st.sampled_from(TENANTS)] * 4, any_text,
                      st.sampled_from(["x", "ACME", "."]))
header_bytes = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x20 or c == 0x09))
# A session-shaped cookie (one dot) reaches the signature check; raw UTF-8 bytes in it.
cookie_bytes = st.one_of(header_bytes, st.tuples(any_text, any_text).map(
    lambda t: "{}.{}".format(*(x.replace(".", "").replace(";", "") for x in t))
    .encode("utf-8", "surrogatepass")).map(
    lambda b: bytes(c for c in b if c >= 0x20 or c == 0x09)))


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(any_text, st.booleans(), st.none(), st.integers(),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from(TENANTS), st.just("__BIG__"), st.just("__BIG__"))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), any_text), inner,
                        max_size=5)), max_leaves=12)


def fuzzed_text() -> st.SearchStrategy[Any]:
    return st.one_of(any_text, st.just("__BIG__"), st.sampled_from(TENANTS))


def shaped_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Bodies shaped like the real ones (so they get past the envelope checks to the
    code behind), with fuzzed values in every slot."""
    config = st.dictionaries(st.sampled_from(
        ("top_k", "temperature", "max_tokens", "prompt_template", "prompt_variables",
         "branding", "model", "plan", "rerank_top_n")), st.one_of(
        fuzzed_text(), st.integers(), st.dictionaries(any_text, fuzzed_text(), max_size=2),
        st.fixed_dictionaries({"logo_url": any_text.map(lambda t: f"https://a.example/{t}")})),
        max_size=3)
    reason = st.one_of(st.none(), fuzzed_text())
    return st.one_of(
        st.fixed_dictionaries({"config": config, "merge": st.booleans(), "reason": reason}),
        st.fixed_dictionaries({"config": config, "tenants": st.lists(fuzzed_text(),
                                                                     max_size=3),
                               "reason": reason}),
        st.fixed_dictionaries({"config": config, "query": fuzzed_text()}),
        st.fixed_dictionaries({"tenant_id": fuzzed_text(), "query": fuzzed_text()}),
        st.fixed_dictionaries({"locked": st.booleans(), "reason": reason}))


@st.composite
def json_body(draw) -> bytes:
    """A JSON object whose strings may hold lone surrogates (escaped as JSON allows) and
    whose numbers may be thousands of digits long; or, now and then, odd bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200))
    value = draw(shaped_bodies() if kind > 4 else
                 st.dictionaries(st.sampled_from(FIELD_NAMES), json_values(), max_size=5))
    text = json.dumps(value).replace('"__BIG__"', draw(big_number))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def form_body(draw) -> bytes:
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(FIELD_NAMES), any_text),
                                    st.one_of(any_text, big_number)), max_size=8))
    body = "&".join(f"{quote(k.encode('utf-8', 'surrogatepass'))}="
                    f"{quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in pairs)
    if draw(st.booleans()):
        body += "&csrf=__CSRF__&expected_version=__VERSION__"
    return body.encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=200))


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: tuple[str, ...]
    query_names: tuple[str, ...]


def endpoints(routes: list[Any], prefix: str = "") -> list[Endpoint]:
    """Every APIRoute of the app with its full path, routers included at any depth."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(Endpoint(prefix + route.path, tuple(sorted(route.methods)),
                                  tuple(p.alias for p in route.dependant.query_params)))
        elif hasattr(route, "original_router"):  # FastAPI's included router
            found += endpoints(route.original_router.routes,
                               prefix + route.include_context.prefix)
    return found


@dataclass
class Fuzzed:
    route: Endpoint
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | None


@st.composite
def requests_for(draw, routes: list[Endpoint]) -> Fuzzed:
    route = draw(st.sampled_from(routes))
    method = draw(st.sampled_from(sorted(route.methods)))
    path = re.sub(r"\{[^}]+\}", lambda _m: quote(draw(path_text).encode(
        "utf-8", "surrogatepass"), safe=""), route.path)
    names = [*route.query_names, "reason", "api_key"]
    query = "&".join(f"{quote(n)}={quote(draw(st.one_of(any_text, big_number)).encode('utf-8', 'surrogatepass'))}"
                     for n in draw(st.lists(st.sampled_from(names), max_size=3)))
    auth = draw(st.sampled_from(["admin", "admin", "admin", "tenant", "none", "garbage"]))
    headers = [(b"if-match", draw(header_bytes))] if draw(st.booleans()) else []
    headers.append((b"cookie", b"m11_console=" + draw(cookie_bytes) + b"; m11_console_login="
                    + draw(cookie_bytes)) if draw(st.booleans()) else (b"x-none", b"1"))
    headers.append((b"authorization", {"admin": ADMIN["Authorization"].encode(),
                                       "tenant": b"__TENANT__", "none": b"",
                                       "garbage": b"Bearer " + draw(header_bytes)}[auth]))
    body = None
    if method in ("POST", "PUT", "PATCH"):
        form = route.path.startswith("/console")
        body = draw(form_body() if form else json_body())
        kind = b"application/x-www-form-urlencoded" if form else b"application/json"
        headers.append((b"content-type", draw(st.sampled_from([kind] * 5 + [b"text/plain"]))))
    return Fuzzed(route, method, path, query, headers, body)


def invalid_rows(repo: TenantConfigRepository) -> list[str]:
    """Everything stored that breaks a rule: configs that do not validate, ids that are not
    ids, audit text that breaks the text policy."""
    problems = []
    store = repo.store
    for record in store.get_many():
        try:
            validate_tenant_id(record.tenant_id)
            validate_config(record.config, stored=True)
            for entry in store.history(record.tenant_id):
                validate_config(entry.config, stored=True)
        except ValueError as exc:
            problems.append(f"{record.tenant_id!r}: {exc}")
    for entry in store.audit(limit=100_000):
        for name, text, multiline in (("actor", entry.actor, False),
                                      ("reason", entry.reason or "", False),
                                      ("tenant_id", entry.tenant_id, False),
                                      ("diff", json.dumps(entry.diff, ensure_ascii=False), True)):
            if text_problem(text, multiline=multiline):
                problems.append(f"audit {entry.id} {name}: {text!r}")
    return problems


def fuzz(repo: TenantConfigRepository) -> None:
    api = make_api(repo, m11_rate_config_writes="off", m11_rate_previews="off",
                   m11_rate_queries="off")
    for tid in TENANTS:
        api.write(tid, {"top_k": 4})
    tenant_auth = api.key_for(TENANTS[0])["Authorization"].encode()
    console = api.client
    page = console.get("/console/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    console.post("/console/login", data={"login_nonce": nonce,
                                         "key": ADMIN["Authorization"].split()[1]})
    session = console.cookies.get("m11_console")
    csrf = re.search(r'name="csrf" value="([^"]+)"', console.get(f"/console/t/{TENANTS[0]}").text)[1]
    routes = endpoints(api.app.routes)
    seen: set[str] = set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests_for(routes))
    def one(req: Fuzzed) -> None:
        seen.add(req.route.path)
        headers = [(k, tenant_auth if v == b"__TENANT__" else v) for k, v in req.headers if v]
        if req.route.path.startswith("/console") and not any(k == b"cookie" for k, _ in headers):
            headers.append((b"cookie", f"m11_console={session}".encode()))
        body = req.body
        if body is not None:
            body = body.replace(b"__CSRF__", csrf.encode()).replace(b"__VERSION__", b"2")
        url = req.path + (f"?{req.query}" if req.query else "")
        console.cookies.clear()
        response = api.client.request(req.method, url, content=body, headers=headers,
                                      follow_redirects=False)
        assert response.status_code < 500, (req.method, url, headers, body, response.text)

    one()
    assert invalid_rows(repo) == []
    assert len(seen) > len(routes) // 2  # the run reached most routes, not a few


def test_no_fuzzed_request_gets_a_5xx_or_stores_bad_data_on_sqlite(tmp_path):
    repo = TenantConfigRepository(open_store(f"sqlite:///{tmp_path / 'fuzz.db'}"),
                                  ConfigCache(fakeredis.FakeRedis(server=fakeredis.FakeServer())))
    try:
        fuzz(repo)
    finally:
        repo.close()


@pytest.mark.services
def test_no_fuzzed_request_gets_a_5xx_or_stores_bad_data_on_postgresql():
    with postgres_schema(REAL_DATABASE_URL) as url:
        repo = TenantConfigRepository(open_store(url), ConfigCache(
            fakeredis.FakeRedis(server=fakeredis.FakeServer())))
        try:
            fuzz(repo)
        finally:
            repo.close()
