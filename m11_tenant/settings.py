"""Deployment settings, read once from the environment or a ``.env`` file.

One typed object instead of ``os.environ`` lookups scattered through the code: a typo in a
variable's value fails at start with a clear message, and ``.env.example`` documents them.
Every setting of the package is here, the server's (rate limits, body cap, timeouts) too, so
a ``.env`` in the working directory does for ``serve``, the pipeline and the notebooks what
the same variables in the environment do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from m11_tenant.strict_json import MAX_BODY_BYTES

DEFAULT_DATABASE_URL = "sqlite:///m11_tenant.db"
HEADER_TIMEOUT = 10.0  # seconds for one request's headers (nginx's default is 60)

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


class Settings(BaseSettings):
    """Every knob the package reads from the environment (names are the env variables)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///path.db (embedded default) or postgresql://user@host/db",
    )
    redis_url: str | None = Field(
        None,
        description="unset: an in-process fakeredis; redis://host:6379/0: a real Redis; "
        "empty: no cache at all",
    )
    redis_ttl: int = Field(300, ge=1, description="seconds a cached config lives in Redis")
    last_known_good_ttl: int = Field(86_400, ge=1, description="seconds the fallback copy lives")
    history_limit: int = Field(10, ge=1, le=1000, description="versions kept per tenant")
    near_cache_size: int = Field(
        10_000, ge=0, description="validated configs kept in each process (about 3.5 KB each); "
        "0 turns the near cache off")
    near_cache_ttl: float = Field(300.0, gt=0, description="seconds a near-cache entry may "
                                  "live without an invalidation (the backstop)")
    warm_start: bool = Field(False, description="load every tenant into the near cache at start")
    m11_admin_key: str | None = Field(None, description="platform admin API key")
    # Model providers: a key (or a base URL) makes the pipeline live for that provider's
    # catalog entries; with none of them set every answer comes from the offline generator.
    openai_api_key: str | None = Field(None, description="enables catalog entries with "
                                       "provider 'openai'")
    openai_base_url: str | None = Field(None, description="another OpenAI endpoint (a proxy, "
                                        "or a local OpenAI-compatible server); default OpenAI's")
    anthropic_api_key: str | None = Field(None, description="enables catalog entries with "
                                          "provider 'anthropic'")
    anthropic_base_url: str | None = Field(None, description="another Anthropic endpoint; "
                                           "default Anthropic's")
    openai_compatible_base_url: str | None = Field(
        None, description="an OpenAI-compatible server (vLLM, Ollama, LiteLLM …) for catalog "
        "entries with provider 'openai_compatible'")
    openai_compatible_api_key: str | None = Field(
        None, description="its key, if it wants one")
    m11_model_timeout: float = Field(30.0, gt=0, le=600, description="seconds one model call "
                                     "may take before it counts as a failed attempt")
    m11_region: str | None = Field(
        None, description="serve as this region of a multi-region deployment (needs "
        "M11_REGIONS and a REDIS_URL every region reaches)")
    m11_regions: str | None = Field(None, description="every region's name, comma-separated: "
                                    "us,eu,ap")
    m11_region_strategy: Literal["field-merge", "lww"] = Field(
        "field-merge", description="conflict resolution; every region must use the same")
    m11_region_lag_alert_ms: float = Field(
        5_000.0, ge=0, description="a region pair alerts when its p95 lag or its oldest "
        "unapplied change is older (ms)")
    m11_region_lag_alert_window_s: float = Field(
        60.0, gt=0, description="the alert's p95 is over the changes applied in this many "
        "last seconds, so it clears once a region has caught up")
    m11_region_namespace: str = Field(
        "m11:regions", min_length=1, description="prefix of the change streams in Redis; "
        "one per deployment sharing a Redis")
    query_log_max_age_days: int = Field(
        30, ge=1, le=365, description="days a tenant's logged question is kept at most "
        "(the tenant's query_log_size caps how many)")
    m11_data_dir: Path | None = Field(
        None, description="a directory with the deployment's own models.json and plans.json "
        "(the model catalog and the plans); default the shipped data/")
    # The server's knobs (``serve``, ``create_app``).
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


def load_settings(**overrides: object) -> Settings:
    """Read the settings now (environment and ``.env``), with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
