"""The API's own knobs (rate limits, body cap) on top of the package's :class:`Settings`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, field_validator

from m11_tenant.schema import MAX_BODY_BYTES
from m11_tenant.settings import Settings
from m11_tenant.web.server import HEADER_TIMEOUT

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
_RATE = re.compile(r"([0-9]+)/(second|minute|hour|day)")


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per fixed window of ``period`` seconds."""

    limit: int
    period: int


def parse_rate(text: str) -> Rate | None:
    """``"10/hour"`` -> ``Rate(10, 3600)``; ``"off"`` -> ``None`` (no limit).

    Raises:
        ValueError: naming the accepted forms.
    """
    if text == "off":
        return None
    match = _RATE.fullmatch(text)
    if not match or int(match[1]) < 1:
        raise ValueError(f"rate {text!r} must look like '10/hour' (N >= 1 per second, minute, "
                         "hour or day) or be 'off'")
    return Rate(int(match[1]), PERIODS[match[2]])


class ApiSettings(Settings):
    """Settings for ``serve``: the package's, plus rate limits and the request-body cap."""

    m11_rate_config_writes: str = Field("10/hour", description="config writes per tenant key")
    m11_rate_previews: str = Field("20/hour", description="previews per tenant key")
    m11_rate_queries: str = Field(
        "plan", description="'plan' = only the plan's daily quota (enforced by the usage ledger); "
        "'N/unit' = that rate per tenant as well; 'off' = the same as 'plan'")
    m11_replay_time_budget: float = Field(
        20.0, gt=0, le=300, description="seconds a replay may run before it reports what it has")
    m11_auth_failures: str = Field(
        "10/minute", description="failed authentications per client address before 429 "
        "(API keys and console sign-in); the window starts at the first failure")
    m11_max_body_bytes: int = Field(MAX_BODY_BYTES, ge=256, le=10 * 1024 * 1024,
                                    description="largest request body accepted (413 above)")
    m11_header_timeout: float = Field(
        HEADER_TIMEOUT, gt=0, le=300,
        description="seconds a connection may take to send a request's headers (serve)")
    m11_body_timeout: float = Field(
        30.0, gt=0, le=600, description="seconds a request body may take to arrive (408)")

    @field_validator("m11_rate_config_writes", "m11_rate_previews", "m11_auth_failures")
    @classmethod
    def _rate(cls, text: str) -> str:
        parse_rate(text)
        return text

    @field_validator("m11_rate_queries")
    @classmethod
    def _query_rate(cls, text: str) -> str:
        if text != "plan":
            parse_rate(text)
        return text


def api_settings(settings: Settings | None = None, **overrides: object) -> ApiSettings:
    """An :class:`ApiSettings` from the environment, a plain ``Settings``, and overrides."""
    if isinstance(settings, ApiSettings) and not overrides:
        return settings
    base = settings.model_dump() if settings is not None else {}
    return ApiSettings(**{**base, **overrides})  # type: ignore[arg-type]
