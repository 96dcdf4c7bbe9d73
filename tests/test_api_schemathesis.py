"""The OpenAPI schema fuzzed by schemathesis: whatever it sends, the server never answers 5xx.

Bounded so it stays a normal test: a fixed number of examples per operation, no deadline
(timings are not asserted), derandomized so a failure reproduces. The app is built at
import time on an in-memory database because schemathesis' lazy ``from_fixture`` loader
does not work with this pytest version.
"""

from __future__ import annotations

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


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case):
    case.call_and_validate(headers=ADMIN, checks=[not_a_server_error])

