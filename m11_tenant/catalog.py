"""The model catalog and the plans a deployment offers: ``models.json`` and ``plans.json``.

Adding a model or a plan is a data change. Where the files are read from is an argument
or a setting (``M11_DATA_DIR``, default the shipped ``data/``), never decided at import:
:func:`load_catalog` with no argument reads the settings once, on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from m11_tenant.settings import load_settings

#: The data shipped with the package: catalog, plans, example tenants, corpus, logos.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: Who can serve a catalog entry (see ``m11_tenant.rag.providers``): OpenAI, Anthropic, or
#: an OpenAI-compatible server of the operator's (vLLM, Ollama, LiteLLM …).
PROVIDERS = ("openai", "anthropic", "openai_compatible")


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model catalog: who serves it and what a token costs."""

    name: str
    provider: str
    api_model: str
    input_usd_per_1k: float
    output_usd_per_1k: float
    context_window: int


@dataclass(frozen=True)
class Plan:
    """What a plan allows: models, the max_tokens cap, daily queries, monthly budget."""

    name: str
    allowed_models: tuple[str, ...]
    max_tokens_cap: int
    daily_queries: int
    monthly_budget_usd: float


@dataclass(frozen=True)
class Catalog:
    """The models and plans a deployment offers, loaded from ``data/``."""

    models: dict[str, ModelInfo]
    plans: dict[str, Plan]

    @property
    def default_plan(self) -> Plan:
        return next(iter(self.plans.values()))

    def model(self, name: str) -> ModelInfo:
        return self.models[name]

    def plan(self, name: str) -> Plan:
        return self.plans[name]


def load_catalog(data_dir: Path | None = None) -> Catalog:
    """The catalog in ``data_dir``; without one, the deployment's (``M11_DATA_DIR`` from the
    settings, else the shipped ``data/``), read once per process.

    Raises:
        ValueError: a model names an unknown provider, or a plan a model not in the catalog.
    """
    return _configured_catalog() if data_dir is None else _read_catalog(Path(data_dir))


@lru_cache(maxsize=1)
def _configured_catalog() -> Catalog:
    # Validation asks for the catalog on every config it checks: read the settings once.
    return _read_catalog(load_settings().m11_data_dir or DATA_DIR)


@lru_cache(maxsize=4)
def _read_catalog(data_dir: Path) -> Catalog:
    models_doc = json.loads((data_dir / "models.json").read_text(encoding="utf-8"))
    plans_doc = json.loads((data_dir / "plans.json").read_text(encoding="utf-8"))
    models = {m["name"]: ModelInfo(**m) for m in models_doc["models"]}
    for model in models.values():
        if model.provider not in PROVIDERS:
            raise ValueError(f"model {model.name!r} names provider {model.provider!r}; "
                             f"known providers: {', '.join(PROVIDERS)}")
    plans = {
        p["name"]: Plan(**{**p, "allowed_models": tuple(p["allowed_models"])})
        for p in plans_doc["plans"]
    }
    for plan in plans.values():
        unknown = set(plan.allowed_models) - set(models)
        if unknown:
            raise ValueError(f"plan {plan.name!r} allows models not in the catalog: {unknown}")
    return Catalog(models=models, plans=plans)
