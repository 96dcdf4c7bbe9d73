"""The RAG pipeline each tenant's config shapes: hybrid retrieval, reranking, generation,
plans and cost. See :mod:`m11_tenant.rag.pipeline` for what each config field does.

    from m11_tenant.rag import RagPipeline, InMemoryLedger
    pipeline = RagPipeline(repository, InMemoryLedger())
    result = pipeline.query("acme", "How do I stop one tenant reading another's data?")
    result.model_dump()
"""

from m11_tenant.rag.check import CheckReport, check_all_tenants, check_tenants, sample_questions
from m11_tenant.rag.corpus import Corpus, Passage, load_corpus, load_eval
from m11_tenant.rag.index import HybridIndex, get_default_index
from m11_tenant.rag.ledger import InMemoryLedger, UsageLedger, UsageTotals, WriteBehindLedger
from m11_tenant.rag.pipeline import QueryResult, RagPipeline

__all__ = [
    "CheckReport",
    "Corpus",
    "HybridIndex",
    "InMemoryLedger",
    "Passage",
    "QueryResult",
    "RagPipeline",
    "UsageLedger",
    "UsageTotals",
    "WriteBehindLedger",
    "check_all_tenants",
    "check_tenants",
    "get_default_index",
    "load_corpus",
    "load_eval",
    "sample_questions",
]
