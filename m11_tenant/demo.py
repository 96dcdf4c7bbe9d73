"""The short tour that ``make demo`` prints: the repository's behaviour, end to end."""

from __future__ import annotations

from collections.abc import Callable

from m11_tenant.errors import ConfigValidationError
from m11_tenant.rag import RagPipeline
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.seed import load_example_tenants, seed_tenants

TOUR_QUESTION = "How do I keep one tenant's configuration from leaking into another's?"
TOUR_FIELDS = ("plan", "model", "temperature", "max_tokens", "top_k", "alpha",
               "enable_reranking")


def run_tour(repo: TenantConfigRepository, say: Callable[[str], None] = print) -> None:
    """Seed the example tenants, then show resolution, rejection, merge/replace, rollback,
    and the same question answered through each tenant's pipeline."""
    written = seed_tenants(repo)
    say(f"Seeded {len(written)} example tenants into {repo.url}\n")

    say("1. Four tenants, four configs (read through the cache):")
    for tenant in load_example_tenants()[:4]:
        config = repo.get_config(tenant.tenant_id).model_dump()
        fields = ", ".join(f"{name}={config[name]}" for name in TOUR_FIELDS)
        say(f"   {tenant.tenant_id:<16} {fields}")
    say(f"   unknown tenant   -> defaults (version {repo.get_record('new-tenant').version})\n")

    say("2. A bad config is rejected and nothing changes:")
    before = repo.get_record("startup-co").version
    try:
        repo.update_config("startup-co", {"temperature": 3.5, "model": "gpt-4", "top_k": True})
    except ConfigValidationError as exc:
        say("   " + str(exc).replace("\n", "\n   "))
    say(f"   startup-co is still at version {repo.get_record('startup-co').version} "
        f"(was {before})\n")

    say("3. Merge changes one field; replace resets the rest to defaults:")
    merged = repo.update_config("budget-saas", {"temperature": 0.9}, merge=True)
    say(f"   merge   {{temperature: 0.9}} -> model={merged.config.model}, "
        f"top_k={merged.config.top_k}, temperature={merged.config.temperature} "
        f"(v{merged.version})")
    replaced = repo.update_config("budget-saas", {"temperature": 0.9}, merge=False)
    say(f"   replace {{temperature: 0.9}} -> model={replaced.config.model}, "
        f"top_k={replaced.config.top_k}, temperature={replaced.config.temperature} "
        f"(v{replaced.version})\n")

    say("4. Roll back the replace (a rollback is a new version; history is kept):")
    restored = repo.rollback("budget-saas", merged.version, actor="demo")
    say(f"   rollback to v{merged.version} -> model={restored.config.model}, "
        f"top_k={restored.config.top_k} (now v{restored.version})")
    versions = [f"v{h.version}:{h.action}" for h in repo.get_history("budget-saas")]
    say(f"   history: {', '.join(versions)}")
    last = repo.get_audit_log("budget-saas", limit=1)[0]
    say(f"   audit:   {last.actor} {last.action} v{last.version} changed "
        f"{', '.join(sorted(last.diff))}\n")

    say("5. The same question, four tenants, four pipelines (offline generator, no key):")
    pipeline = RagPipeline(repo, repo.ledger)
    for tenant in load_example_tenants()[:4]:
        result = pipeline.query(tenant.tenant_id, TOUR_QUESTION)
        sources = ", ".join(s.id for s in result.sources)
        say(f"   {tenant.tenant_id:<16} {result.model_used:<15} sources [{sources}]")
        say(f"   {'':<16} {_first_line(result.answer)}  (${result.cost_usd:.5f})")
    say("")

    stats = repo.get_stats()
    where = {"near": "the near cache", "cache": "Redis", "database": "the database",
             "last_known_good": "the last-known-good copy"}
    sources = ", ".join(f"{n} from {where.get(k, k)}" for k, n in stats["sources"].items())
    say(f"Config reads: {sources} (hit rate {stats['cache_hit_rate']:.0%}); "
        f"health: {repo.health()['status']}")


def _first_line(answer: str, width: int = 90) -> str:
    line = answer.splitlines()[0] if answer else ""
    return line if len(line) <= width else line[: width - 3] + "..."
