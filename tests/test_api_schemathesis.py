"""The OpenAPI schema fuzzed by schemathesis: whatever it sends, the server never answers 5xx.

Run as the admin and as a tenant key, with positive and negative data; besides "no 5xx",
every response must carry the security headers and no error may name a driver,
host or file. Bounded so it stays a normal test: a fixed number of examples per operation, no deadline
(timings are not asserted), derandomized so a failure reproduces. The app is built at
import time on an in-memory database because schemathesis' lazy ``from_fixture`` loader
does not work with this pytest version.
"""

from __future__ import annotations

import re

import fakeredis
import schemathesis
from api_support import ADMIN, make_api
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from m11_tenant.cache import ConfigCache
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.seed import seed_tenants
from m11_tenant.store import open_store

MAX_EXAMPLES = 12

_repo = TenantConfigRepository(open_store("sqlite:///:memory:"),
                               ConfigCache(fakeredis.FakeRedis(server=fakeredis.FakeServer())))
seed_tenants(_repo)  # real tenants: the documented example ids hit stored data
_api = make_api(_repo)
schema = schemathesis.openapi.from_asgi("/openapi.json", _api.app)


TENANT_EXAMPLES = 5
TENANT = {"Authorization": _api.key_for("startup-co")["Authorization"]}
# What no response may carry: driver names, file paths, tracebacks (infrastructure).
LEAKS = re.compile(r"sqlite|psycopg|postgres|redis|traceback|/tmp/|\.py\b|127\.0\.0\.1",
                   re.IGNORECASE)


def no_infrastructure_and_secure_headers(ctx, response, case) -> None:
    """Every answer: ``nosniff``, not frameable; no error names a host, driver or file."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers.get("x-content-type-options") == ["nosniff"], headers
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", [""])[0]
    if response.status_code >= 400:  # (answers may quote the corpus, which names Redis)
        leak = LEAKS.search(response.text)
        assert leak is None, f"{case.method} {case.path}: {leak[0]!r} in {response.text[:300]}"


CHECKS = [not_a_server_error, no_infrastructure_and_secure_headers]


# Positive and negative data (schemathesis' default modes), NUL characters included.
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case):
    case.call_and_validate(headers=ADMIN, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=TENANT_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_with_a_tenant_key_makes_the_server_fail(case):
    """The same, as a tenant key: the 403 paths (and their audit counting) too."""
    case.call_and_validate(headers=TENANT, checks=CHECKS)

