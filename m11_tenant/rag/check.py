"""Regression check across tenants (the course's failure #5: "tests only cover the default
config").

Every stored tenant's config is run through the pipeline on a few eval questions, writing
nothing, and checked for what breaks in production but not in a default-config test: a
template that no longer renders, a model the catalog or the plan no longer allows, a
``max_tokens`` above the plan's cap, a prompt that does not fit the model's context window,
an empty answer or no sources. ``python -m m11_tenant check`` prints :meth:`CheckReport.text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from m11_tenant.errors import ConfigValidationError, TenantConfigError
from m11_tenant.rag.corpus import load_eval
from m11_tenant.rag.pipeline import RagPipeline
from m11_tenant.rag.plans import check_static_limits
from m11_tenant.schema import validate_config


class TenantLister(Protocol):
    """A repository (its ``iter_tenants()`` is used when it has one) or any source of
    configs with a ``list_tenants()``."""

    def get_config(self, tenant_id: str) -> Any: ...
    def list_tenants(self) -> Any: ...


class TenantCheck(BaseModel):
    model_config = ConfigDict(frozen=True)
    tenant_id: str
    ok: bool
    questions_run: int
    problems: list[str]


class CheckReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    ok: bool
    questions: list[str]
    tenants: list[TenantCheck]

    @property
    def failing(self) -> list[str]:
        return [t.tenant_id for t in self.tenants if not t.ok]

    def text(self) -> str:
        """A short human report, one line per tenant, problems indented under it."""
        lines = [f"checked {len(self.tenants)} tenant(s) on {len(self.questions)} question(s): "
                 + ("all ok" if self.ok else f"{len(self.failing)} failing")]
        for t in self.tenants:
            lines.append(f"  {'ok  ' if t.ok else 'FAIL'} {t.tenant_id}")
            lines.extend(f"       - {p}" for p in t.problems)
        return "\n".join(lines)


def _all_tenants(source: TenantLister) -> list[str]:
    """Every tenant id: the repository's ``iter_tenants()`` (every page), else whatever a
    plain source's ``list_tenants()`` returns."""
    iter_tenants = getattr(source, "iter_tenants", None)
    listed = iter_tenants() if iter_tenants is not None else source.list_tenants()
    return sorted(set(_tenant_ids(listed)))


def _tenant_ids(listed: Any) -> list[str]:
    """Accept a list of ids, of objects/dicts with ``tenant_id``, or ``{"tenants": [...]}``."""
    if isinstance(listed, dict):
        listed = listed.get("tenants", [])
    ids = []
    for item in listed if isinstance(listed, Iterable) else []:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, dict):
            ids.append(str(item["tenant_id"]))
        else:
            ids.append(str(item.tenant_id))
    return sorted(ids)


def _short(exc: BaseException) -> str:
    """The exception's first line, plus the field-level errors of a validation error."""
    head = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if isinstance(exc, ConfigValidationError):
        head += "".join(f"; {e.field}: {e.message}" for e in exc.errors)
    return head


def check_tenants(source: TenantLister, pipeline: RagPipeline, questions: Sequence[str],
                  *, tenant_ids: Iterable[str] | None = None) -> CheckReport:
    """Run each tenant's stored config on ``questions`` with :meth:`RagPipeline.run`.

    Nothing is written and no usage is recorded. A tenant fails if loading its config, any
    limit check or any question raises, or an answer comes back empty, without sources or
    over its ``max_tokens``. Unexpected exceptions are reported too, never raised: one broken
    tenant must not hide the others.
    """
    ids = sorted(tenant_ids) if tenant_ids is not None else _all_tenants(source)
    checks = []
    for tid in ids:
        problems: list[str] = []
        ran = 0
        try:
            # Loading skips the injection guard (the config passed it when written);
            # validating again with the guard catches texts a newer guard refuses.
            config = validate_config(source.get_config(tid).model_dump(),
                                     catalog=pipeline.catalog)
        except Exception as exc:
            checks.append(TenantCheck(tenant_id=tid, ok=False, questions_run=0,
                                      problems=[f"config does not load: {_short(exc)}"]))
            continue
        try:  # a plan/limit problem fails every question the same way: report it once
            check_static_limits(config, pipeline.catalog)
        except TenantConfigError as exc:
            checks.append(TenantCheck(tenant_id=tid, ok=False, questions_run=0,
                                      problems=[f"limits: {_short(exc)}"]))
            continue
        for q in questions:
            try:
                result = pipeline.run(config, q, tenant_id=tid)
            except TenantConfigError as exc:
                problems.append(f"{q!r}: {_short(exc)}")
                continue
            except Exception as exc:  # a bug, reported like the rest
                problems.append(f"{q!r}: unexpected {_short(exc)}")
                continue
            ran += 1
            if not result.answer.strip():
                problems.append(f"{q!r}: empty answer")
            if not result.sources:
                problems.append(f"{q!r}: no sources")
            if result.usage.completion_tokens > config.max_tokens:
                problems.append(f"{q!r}: answer has {result.usage.completion_tokens} tokens, "
                                f"max_tokens is {config.max_tokens}")
        checks.append(TenantCheck(tenant_id=tid, ok=not problems, questions_run=ran,
                                  problems=problems))
    return CheckReport(ok=all(c.ok for c in checks), questions=list(questions), tenants=checks)


def sample_questions(n: int = 4) -> list[str]:
    """``n`` eval questions, taken round-robin across question kinds in file order, so the
    sample is the same on every run and covers keyword and paraphrase questions alike."""
    by_kind: dict[str, list[str]] = {}
    for q in load_eval():
        by_kind.setdefault(q.kind, []).append(q.question)
    picked: list[str] = []
    queues = [list(v) for _, v in sorted(by_kind.items())]
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def check_all_tenants(source: TenantLister, *, questions: Sequence[str] | None = None,
                      live: bool = False, pipeline: RagPipeline | None = None) -> CheckReport:
    """What ``python -m m11_tenant check`` runs: every tenant on :func:`sample_questions`.

    Offline by default (``live=False``): the check is about templates, models and limits,
    and should not spend money; ``live=True`` calls the models as production would.
    """
    if pipeline is None:
        pipeline = RagPipeline(generation="auto" if live else "offline")
    return check_tenants(source, pipeline, list(questions or sample_questions()))
