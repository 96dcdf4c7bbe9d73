"""Shared helpers for the tests/test_rag_*.py suites: a fixture corpus index, configs, an
SQLite ledger (the store's contract, in miniature) and settings without providers."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from m11_tenant.rag.corpus import load_corpus, load_eval
from m11_tenant.rag.embed import MiniLMEmbedder
from m11_tenant.rag.index import HybridIndex
from m11_tenant.rag.ledger import UsageTotals
from m11_tenant.rag.plans import CatalogView, default_catalog
from m11_tenant.schema import TenantConfig, validate_config
from m11_tenant.settings import Settings
from m11_tenant.store import CostAlert

FIXTURES = Path(__file__).parent / "fixtures"
FIXED_NOW = datetime(2026, 3, 14, 15, 0, 0, tzinfo=UTC)


@functools.cache
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@functools.cache
def fixture_index() -> HybridIndex:
    """The 16-passage fixture corpus, indexed once per test session (vectors not saved)."""
    return HybridIndex(load_corpus(FIXTURES / "corpus.jsonl"), embedder(), save_vectors=False)


def fixture_eval():
    return load_eval(FIXTURES / "eval.jsonl")


@functools.cache
def catalog() -> CatalogView:
    return default_catalog()


def make_config(**overrides: Any) -> TenantConfig:
    """A validated config: the schema's defaults with ``overrides``."""
    return validate_config(overrides)


def stale_config(**overrides: Any) -> TenantConfig:
    """A config that skipped validation: what a stored config becomes when its plan or the
    catalog changes after it was saved (the pipeline must still refuse it)."""
    return TenantConfig.model_construct(**overrides)


class DictConfigSource:
    """A config source over a dict (the repository's get_config / list_tenants)."""

    def __init__(self, configs: dict[str, Any]):
        self.configs = configs

    def get_config(self, tenant_id: str) -> Any:
        value = self.configs[tenant_id]
        if isinstance(value, Exception):
            raise value
        return value

    def list_tenants(self) -> list[str]:
        return list(self.configs)


class SqliteLedger:
    """The UsageLedger protocol on SQLite via sqlite-utils: one row per tenant per day,
    incremented atomically by an upsert."""

    def __init__(self, path: str | Path):
        self.db = sqlite_utils.Database(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS usage (tenant_id TEXT NOT NULL, day TEXT NOT NULL, "
            "queries INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, "
            "completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, "
            "PRIMARY KEY (tenant_id, day))"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS cost_alerts (tenant_id TEXT NOT NULL, month TEXT NOT NULL, "
            "threshold_pct INTEGER NOT NULL, PRIMARY KEY (tenant_id, month, threshold_pct))"
        )

    def record_cost_alert(self, alert: CostAlert) -> bool:
        with self.db.conn:
            cursor = self.db.execute("INSERT OR IGNORE INTO cost_alerts VALUES (?, ?, ?)",
                                     [alert.tenant_id, alert.month, alert.threshold_pct])
        return cursor.rowcount == 1

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, day) DO "
                "UPDATE SET queries = queries + excluded.queries, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cost_usd = cost_usd + excluded.cost_usd",
                [tenant_id, day.isoformat(), queries, prompt_tokens, completion_tokens, cost_usd],
            )

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        today = self.db.execute("SELECT queries FROM usage WHERE tenant_id = ? AND day = ?",
                                [tenant_id, day.isoformat()]).fetchone()
        month = self.db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE tenant_id = ? "
            "AND day >= ? AND day <= ?",
            [tenant_id, day.replace(day=1).isoformat(), day.isoformat()]).fetchone()
        return UsageTotals(queries_today=today[0] if today else 0, cost_month_usd=float(month[0]))


# --- providers ---------------------------------------------------------------------------
def no_providers() -> Settings:
    """Settings with no provider configured, whatever the environment or a .env file says."""
    return Settings(_env_file=None, openai_api_key=None, openai_base_url=None,
                    anthropic_api_key=None, anthropic_base_url=None,
                    openai_compatible_base_url=None, openai_compatible_api_key=None)
