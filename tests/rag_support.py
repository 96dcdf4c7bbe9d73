"""Shared helpers for the tests/test_rag_*.py suites: a fixture corpus index, configs, an
SQLite ledger (the store's contract, in miniature) and a fake OpenAI-compatible client."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai

from m11_tenant.rag.corpus import load_corpus, load_eval
from m11_tenant.rag.embed import MiniLMEmbedder
from m11_tenant.rag.index import HybridIndex
from m11_tenant.rag.plans import CatalogView, default_catalog
from m11_tenant.schema import TenantConfig, validate_config

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


# --- a fake OpenAI-compatible client ------------------------------------------------------
_REQUEST = httpx.Request("POST", "https://api.openai.invalid/v1/chat/completions")


def connection_error() -> Exception:
    return openai.APIConnectionError(request=_REQUEST)


def status_error(status: int) -> Exception:
    cls = {400: openai.BadRequestError, 401: openai.AuthenticationError,
           404: openai.NotFoundError, 429: openai.RateLimitError,
           500: openai.InternalServerError}[status]
    return cls(f"status {status}", response=httpx.Response(status, request=_REQUEST), body=None)


class FakeOpenAI:
    """Records every chat.completions.create call; answers from a per-model script.

    ``script[api_model]`` is a list consumed call by call: an exception is raised, a string
    is returned as the answer. When a model's script runs out, it answers normally.
    """

    def __init__(self, script: dict[str, list[Any]] | None = None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        steps = self.script.get(kwargs["model"], [])
        step = steps.pop(0) if steps else f"answer from {kwargs['model']} [1]"
        if isinstance(step, Exception):
            raise step
        return SimpleNamespace(
            choices=[SimpleNamespace(message=SimpleNamespace(content=step))],
            usage=SimpleNamespace(prompt_tokens=1000, completion_tokens=100, total_tokens=1100),
        )

    @property
    def models_called(self) -> list[str]:
        return [c["model"] for c in self.calls]
