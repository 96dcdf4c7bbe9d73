"""Second-stage rerankers: re-order the first stage's candidates, cheaply and offline.

No offline cross-encoder ships on PyPI, so each reranker here reuses signals the index
already has. Each takes the candidates (in first-stage order), their embedding vectors and
the query vector, and returns the candidates in a new order with ``score`` set to its own
score. :class:`Hit` (a candidate and its scores) lives here, the index returns it.
``bench/retrieval.py`` measures them.

What reranking can do offline (an earlier run of bench/retrieval.py, 262 passages, 27
questions, top 20 re-ordered): the only offline signals are the two the first stage already
mixed, so a reranker can only re-weigh them. RRF brings back the signal a one-sided tenant left out
(nDCG@10 at alpha 0: 0.837 → 0.888; at alpha 1: 0.712 → 0.800) and costs a little where
alpha already mixes both (0.5: 0.897 → 0.852). Cosine re-sorting is the same as alpha = 1
inside the candidate list, and the embeddings are the weaker signal on this corpus, so it
lowers nDCG everywhere except a keyword-only first stage's recall@5 (0.852 → 0.926). MMR
trades relevance for diversity and this eval set rewards relevance only. A real
cross-encoder (a model that reads question and passage together) is what would lift the
hybrid; none ships offline on PyPI.

- ``coverage`` (the default): half the idf-weighted share of the question's terms the
  passage contains, half its normalised cosine. BM25 sums saturated term counts, so a
  passage that repeats one question word can beat one that contains them all; coverage
  cannot be fooled that way, and the cosine half keeps the meaning in play.
- ``cosine``: re-sort by embedding cosine (the same as alpha = 1 inside the candidates).
- ``rrf``: reciprocal rank fusion of the BM25 and cosine ranks inside the candidate list
  (1/(60 + rank) each). Rank-based, so it ignores how the scores are scaled.
- ``mmr``: maximal marginal relevance (lambda 0.7): relevance by cosine, minus similarity
  to what is already chosen, so near-duplicate passages do not fill the context.

Measured by ``bench/retrieval.py`` (300 passages, 80 questions; recall@5 as a tenant uses
reranking, top_k 10 → rerank_top_n 5, for alpha 0 / 0.25 / 0.5 / 0.75 / 1):

    none      0.748  0.769  0.825  0.869  0.779
    coverage  0.756  0.825  0.844  0.856  0.783
    rrf       0.769  0.812  0.819  0.863  0.789
    cosine    0.744  0.740  0.735  0.789  0.779
    mmr       0.727  0.721  0.751  0.798  0.773

``coverage`` gains most where tenants usually sit (alpha up to 0.5, the default) and costs
a little at 0.75, the best first-stage alpha on this set. ``cosine`` only re-weighs a
signal the first stage already had, and the embeddings are the weaker one here; MMR trades
relevance for diversity, which this eval set does not reward. The coverage reranker was
designed after looking at this eval set; it holds on both halves of it (odd and even
questions), but a held-out set would make the claim stronger. A cross-encoder (a model
that reads question and passage together) would do better still; none ships offline on PyPI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from m11_tenant.rag.corpus import Passage


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its scores (all in [0, 1] except ``bm25``)."""

    passage: Passage
    score: float  # the score it was ranked by (hybrid, or the reranker's)
    hybrid: float
    keyword: float  # normalised BM25
    semantic: float  # normalised cosine
    bm25: float
    cosine: float
    coverage: float = 0.0  # idf-weighted share of the question's terms the passage contains


Reranker = Callable[[list[Hit], np.ndarray, np.ndarray], list[Hit]]


def _stable_sort(hits: list[Hit], scores: list[float]) -> list[Hit]:
    order = sorted(range(len(hits)), key=lambda i: (-round(scores[i], 6), i))
    return [replace(hits[i], score=float(scores[i])) for i in order]


def rerank_cosine(hits: list[Hit], vectors: np.ndarray, qvec: np.ndarray) -> list[Hit]:
    return _stable_sort(hits, [h.cosine for h in hits])


def rerank_rrf(hits: list[Hit], vectors: np.ndarray, qvec: np.ndarray, k: int = 60) -> list[Hit]:
    n = len(hits)
    by_kw = sorted(range(n), key=lambda i: (-hits[i].bm25, i))
    by_sem = sorted(range(n), key=lambda i: (-hits[i].cosine, i))
    fused = [0.0] * n
    for ranking in (by_kw, by_sem):
        for rank, i in enumerate(ranking, 1):
            fused[i] += 1.0 / (k + rank)
    return _stable_sort(hits, fused)


def rerank_coverage(hits: list[Hit], vectors: np.ndarray, qvec: np.ndarray) -> list[Hit]:
    return _stable_sort(hits, [0.5 * h.coverage + 0.5 * h.semantic for h in hits])


def rerank_mmr(hits: list[Hit], vectors: np.ndarray, qvec: np.ndarray,
               lam: float = 0.7) -> list[Hit]:
    relevance = vectors @ qvec
    sim = vectors @ vectors.T
    chosen: list[int] = []
    scores: dict[int, float] = {}
    left = list(range(len(hits)))
    while left:
        def mmr(i: int) -> float:
            penalty = max((float(sim[i, j]) for j in chosen), default=0.0)
            return lam * float(relevance[i]) - (1 - lam) * penalty
        best = max(left, key=lambda i: (round(mmr(i), 6), -i))
        scores[best] = mmr(best)
        chosen.append(best)
        left.remove(best)
    return [replace(hits[i], score=scores[i]) for i in chosen]


RERANKERS: dict[str, Reranker] = {"coverage": rerank_coverage, "cosine": rerank_cosine,
                                  "rrf": rerank_rrf, "mmr": rerank_mmr}
DEFAULT_RERANKER = "coverage"
