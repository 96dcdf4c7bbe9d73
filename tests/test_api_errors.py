"""Pure parts of the API: the exception -> HTTP table, rates, If-Match parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from m11_tenant.errors import (
    BudgetExceededError,
    ConfigNotFoundError,
    ConfigValidationError,
    FieldError,
    InvalidTenantIdError,
    ModelUnavailableError,
    QueryRefusedError,
    QuotaExceededError,
    ServiceUnavailableError,
    StoreUnavailableError,
    TemplateError,
    TenantConfigError,
    TenantLockedError,
    VersionConflictError,
    WeakAdminKeyError,
)
from m11_tenant.settings import Rate, Settings, parse_rate
from m11_tenant.web.context import parse_if_match
from m11_tenant.web.errors import HTTP_ERRORS, HttpError, to_http


@pytest.mark.parametrize("exc, status, code, headers", [
    (InvalidTenantIdError("bad"), 400, "invalid_tenant_id", {}),
    (ConfigValidationError(FieldError("body", "x", "json_invalid")), 400, "invalid_json", {}),
    (ConfigValidationError(FieldError("body", "x", "too_large")), 413, "payload_too_large", {}),
    (ConfigValidationError(FieldError("top_k", "x")), 422, "validation_error", {}),
    (ConfigNotFoundError("none"), 404, "not_found", {}),
    (VersionConflictError("acme-co", 1, 3), 412, "version_conflict", {"ETag": '"3"'}),
    (TenantLockedError("locked"), 409, "tenant_locked", {}),
    (QuotaExceededError("q", retry_after=60), 429, "quota_exceeded", {"Retry-After": "60"}),
    (BudgetExceededError("b", retry_after=7), 429, "budget_exceeded", {"Retry-After": "7"}),
    (ModelUnavailableError("m"), 503, "model_unavailable", {}),
    (QueryRefusedError("cap", detail={"field": "max_tokens"}), 422, "query_refused", {}),
    (StoreUnavailableError("down"), 503, "store_unavailable", {"Retry-After": "5"}),
    (ServiceUnavailableError("down"), 503, "service_unavailable", {}),
    (TenantConfigError("unmapped"), 500, "internal_error", {}),
])
def test_every_package_error_has_a_status_and_a_stable_code(exc, status, code, headers):
    err = to_http(exc)
    assert (err.status, err.code, err.headers) == (status, code, headers)
    assert err.message


def test_query_refused_names_the_field_to_change():
    err = to_http(QueryRefusedError("lower max_tokens", detail={"field": "max_tokens"}))
    assert [f.field for f in err.fields] == ["max_tokens"]


def test_a_subclass_is_answered_by_its_nearest_listed_class():
    """The table is walked along the MRO: a class nobody listed (here a subclass made up
    for the test, and the package's TemplateError) gets its nearest ancestor's answer."""
    class RegionQuotaExceeded(QuotaExceededError):
        pass

    assert to_http(RegionQuotaExceeded("q", retry_after=3)).code == "quota_exceeded"
    assert to_http(TemplateError("bad {x}")).code == "validation_error"
    assert to_http(WeakAdminKeyError("short")).status == 500
    assert to_http(ValueError("misuse")).status == 500


def test_every_listed_class_is_a_package_error():
    assert all(issubclass(cls, TenantConfigError) for cls in HTTP_ERRORS)


def test_http_errors_pass_through():
    err = HttpError(415, "unsupported_media_type", "send JSON")
    assert to_http(err) is err


@pytest.mark.parametrize("text, rate", [("10/hour", Rate(10, 3600)), ("1/second", Rate(1, 1)),
                                        ("20/minute", Rate(20, 60)), ("5/day", Rate(5, 86_400)),
                                        ("off", None)])
def test_rates_parse(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "0/hour", "-1/hour", "10/week", "ten/hour", " 10/hour"])
def test_bad_rates_are_refused_at_start(text):
    with pytest.raises(ValueError, match="must look like '10/hour'"):
        parse_rate(text)
    with pytest.raises(ValidationError):
        Settings(m11_rate_config_writes=text)


def test_query_rate_accepts_plan():
    assert Settings(m11_rate_queries="plan").m11_rate_queries == "plan"


@pytest.mark.parametrize("value, version", [(None, None), ("*", None), ('"3"', 3), ("3", 3),
                                            ('W/"12"', 12), (' "0" ', 0)])
def test_if_match_values(value, version):
    assert parse_if_match(value) == version


@pytest.mark.parametrize("value", ['"3", "4"', '"x"', '""', '"1e3"', '"٣"'])
def test_bad_if_match_is_400(value):
    with pytest.raises(HttpError) as caught:
        parse_if_match(value)
    assert (caught.value.status, caught.value.code) == (400, "invalid_header")
