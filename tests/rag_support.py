"""Shared helpers for the tests/test_rag_*.py suites: a fixture corpus index, configs and
settings without providers."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from m11_tenant.rag.corpus import load_corpus, load_eval
from m11_tenant.rag.embed import MiniLMEmbedder
from m11_tenant.rag.index import HybridIndex
from m11_tenant.rag.plans import CatalogView, default_catalog
from m11_tenant.schema import TenantConfig, validate_config
from m11_tenant.settings import Settings

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


# --- providers ---------------------------------------------------------------------------
def no_providers() -> Settings:
    """Settings with no provider configured, whatever the environment or a .env file says."""
    return Settings(_env_file=None, openai_api_key=None, openai_base_url=None,
                    anthropic_api_key=None, anthropic_base_url=None,
                    openai_compatible_base_url=None, openai_compatible_api_key=None)
