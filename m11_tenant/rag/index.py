"""Hybrid retrieval: BM25 and embedding cosine, each min-max normalised, mixed by ``alpha``.

    hybrid(d) = alpha * norm(cosine(q, d)) + (1 - alpha) * norm(bm25(q, d))

``norm`` rescales a score over the whole corpus to [0, 1] (min -> 0, max -> 1), so the two
scales are comparable and ``alpha`` means what it says: 0 ranks exactly as BM25, 1 exactly as
the embeddings, 0.5 weighs them equally. Both scores are computed for every passage (a few
hundred here, so this is a matrix-vector product and a column sum).

Reranking then re-orders the first ``top_k`` candidates and keeps ``rerank_top_n``
(see :mod:`m11_tenant.rag.rerank`). The index is built once per process and shared
(:func:`get_default_index`); nothing here is rebuilt per query.

Per question, everything that depends only on its text (the embedding, BM25 scores, their
normalised forms, term coverage) is kept in a bounded LRU: a repeated question costs a
dict lookup and the mixing. Concurrent new questions are embedded together: the first
thread to need the model embeds every question waiting at that moment in one batch
(:class:`EmbeddingBatcher`), so a burst pays the model's per-call overhead once.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from m11_tenant.minilm import shared_minilm
from m11_tenant.rag.bm25 import BM25
from m11_tenant.rag.corpus import Corpus, load_corpus
from m11_tenant.rag.embed import Embedder, load_or_build_embeddings, passage_text
from m11_tenant.rag.rerank import DEFAULT_RERANKER, RERANKERS, Hit


@dataclass(frozen=True)
class QueryScores:
    """What a search needs from the question's text alone, for every passage."""

    vector: np.ndarray
    bm25: np.ndarray
    cosine: np.ndarray
    keyword: np.ndarray  # minmax(bm25)
    semantic: np.ndarray  # minmax(cosine)
    coverage: np.ndarray


class EmbeddingBatcher:
    """Embeds concurrent questions in micro-batches, without waiting for a batch to fill.

    A caller queues its text; while fewer than ``parallel`` batches run (one per core: the
    model releases the GIL), it becomes a leader and embeds up to ``max_batch`` queued
    texts (its own among them) in one call, then hands every waiter its vector. Callers
    arriving meanwhile queue up for the next batch. Alone, a question is embedded at once.
    Small batches: padding to the longest text wastes more of a big one.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 8, parallel: int | None = None):
        self.embedder, self.max_batch = embedder, max_batch
        self.parallel = parallel or os.cpu_count() or 1
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._done: dict[str, np.ndarray | BaseException] = {}
        self._waiting: dict[str, int] = {}
        self._running = 0

    def embed(self, text: str) -> np.ndarray:
        with self._cond:
            if text not in self._waiting:
                self._queue.append(text)
            self._waiting[text] = self._waiting.get(text, 0) + 1
            while text not in self._done:
                if self._queue and self._running < self.parallel:
                    self._run_batch()
                else:
                    self._cond.wait()
            result = self._done[text]
            self._waiting[text] -= 1
            if not self._waiting[text]:
                del self._waiting[text], self._done[text]
        if isinstance(result, BaseException):
            raise result
        return result

    def _run_batch(self) -> None:
        """Embed the queue's head (called holding the condition; released meanwhile)."""
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        self._running += 1
        self._cond.release()
        try:
            try:
                results: list[np.ndarray | BaseException] = list(self.embedder.embed(batch))
            except Exception as exc:  # every waiter of this batch gets the error
                results = [exc] * len(batch)
        finally:
            self._cond.acquire()
            self._running -= 1
        self._done.update(zip(batch, results, strict=True))
        self._cond.notify_all()


@dataclass
class Retrieval:
    """What a search returned, plus what a reranker needs (the query vector)."""

    hits: list[Hit]
    candidates: list[Hit]
    reranked: bool
    reranker: str | None
    query_vector: np.ndarray = field(repr=False)
    timings_ms: dict[str, float] = field(default_factory=dict)


def minmax(scores: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]; a constant vector (e.g. no keyword matched at all) maps to zeros."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo < 1e-12:
        return np.zeros_like(scores, dtype=np.float32)
    return ((scores - lo) / (hi - lo)).astype(np.float32)


class HybridIndex:
    """BM25 + embedding index over one corpus.

    Parameters:
        corpus: the passages (default ``data/corpus/passages.jsonl``).
        embedder: any :class:`~m11_tenant.rag.embed.Embedder` (default the offline MiniLM).
        vectors: precomputed corpus vectors; by default read from ``data/corpus/`` (computed
            in memory if missing or stale).
        save_vectors: write freshly computed vectors back to ``data/corpus/``.
        warn_stale: warn when the vectors had to be computed (the shipped corpus).
        query_cache: how many questions' scores to keep (0 = none).
    """

    def __init__(self, corpus: Corpus | None = None, embedder: Embedder | None = None, *,
                 vectors: np.ndarray | None = None, save_vectors: bool = False,
                 warn_stale: bool = False, query_cache: int = 256):
        # Per-question scores by text: the same sample questions run for every tenant
        # (previews, the cross-tenant check) and embedding is most of a query's time.
        self._qcache: OrderedDict[str, QueryScores] = OrderedDict()
        self._qcache_size = query_cache
        self._qlock = threading.Lock()
        t0 = time.perf_counter()
        self.corpus = corpus if corpus is not None else load_corpus()
        self.embedder = embedder if embedder is not None else shared_minilm()
        self._batcher = EmbeddingBatcher(self.embedder)
        t1 = time.perf_counter()
        self.bm25 = BM25([passage_text(p.title, p.text) for p in self.corpus.passages])
        t2 = time.perf_counter()
        if vectors is None:
            vectors = load_or_build_embeddings(self.corpus, self.embedder, save=save_vectors,
                                               warn_stale=warn_stale)
        if vectors.shape != (len(self.corpus), self.embedder.dim):
            raise ValueError(f"vectors have shape {vectors.shape}, expected "
                             f"{(len(self.corpus), self.embedder.dim)}")
        self.vectors = vectors
        t3 = time.perf_counter()
        #: How long each part of building took (for the benchmark; not printed by notebooks).
        self.build_timings_ms = {"load_model_and_corpus": (t1 - t0) * 1e3,
                                 "bm25": (t2 - t1) * 1e3, "vectors": (t3 - t2) * 1e3}

    def __len__(self) -> int:
        return len(self.corpus)

    def score_all(self, query: str, query_vector: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw BM25, raw cosine, and the query vector, for every passage."""
        if query_vector is None:
            scores = self.query_scores(query)
            return scores.bm25, scores.cosine, scores.vector
        return self.bm25.scores(query), self.vectors @ query_vector, query_vector

    def embed_query(self, query: str) -> np.ndarray:
        """The query's vector (from the LRU when the same text was seen recently)."""
        return self.query_scores(query).vector

    def query_scores(self, query: str) -> QueryScores:
        """Everything a search needs from the question's text (LRU by text)."""
        with self._qlock:
            cached = self._qcache.get(query)
            if cached is not None:
                self._qcache.move_to_end(query)
                return cached
        vector = self._batcher.embed(query)
        bm25, cosine = self.bm25.scores(query), self.vectors @ vector
        scores = QueryScores(vector, bm25, cosine, minmax(bm25), minmax(cosine),
                             self.bm25.coverage(query))
        if self._qcache_size > 0:
            with self._qlock:
                self._qcache[query] = scores
                while len(self._qcache) > self._qcache_size:
                    self._qcache.popitem(last=False)
        return scores

    def search(self, query: str, *, top_k: int = 5, alpha: float = 0.5,
               rerank: bool = False, rerank_top_n: int | None = None,
               reranker: str = DEFAULT_RERANKER) -> Retrieval:
        """The ``top_k`` best passages by hybrid score; with ``rerank``, those ``top_k``
        candidates re-ordered by ``reranker`` and cut to ``rerank_top_n`` (default ``top_k``).

        Ties are broken by corpus order, so results are deterministic.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        t_embed = time.perf_counter()
        scores = self.query_scores(query)
        t0 = time.perf_counter()
        bm25, cosine, qvec = scores.bm25, scores.cosine, scores.vector
        keyword, semantic = scores.keyword, scores.semantic
        hybrid = alpha * semantic + (1.0 - alpha) * keyword
        # Round before sorting so float noise in the last bits cannot reorder near-ties; a
        # stable sort keeps corpus order among equal scores.
        order = np.argsort(-np.round(hybrid, 6), kind="stable")[:top_k]
        passages = self.corpus.passages
        candidates = [
            Hit(passages[i], h, h, k, s, b, c, v) for i, h, k, s, b, c, v in zip(
                order.tolist(), hybrid[order].tolist(), keyword[order].tolist(),
                semantic[order].tolist(), bm25[order].tolist(), cosine[order].tolist(),
                scores.coverage[order].tolist(), strict=True)
        ]
        t1 = time.perf_counter()
        timings = {"embed": (t0 - t_embed) * 1e3, "retrieve": (t1 - t0) * 1e3, "rerank": 0.0}
        if not rerank:
            return Retrieval(candidates, candidates, False, None, qvec, timings)
        n = top_k if rerank_top_n is None else min(rerank_top_n, top_k)
        fn = RERANKERS[reranker]
        hits = fn(candidates, self.vectors[order], qvec)[:n]
        timings["rerank"] = (time.perf_counter() - t1) * 1e3
        return Retrieval(hits, candidates, True, reranker, qvec, timings)


_default: HybridIndex | None = None
_lock = threading.Lock()


def get_default_index() -> HybridIndex:
    """The process-wide index over ``data/corpus/`` and the offline embedder (built once)."""
    global _default
    with _lock:
        if _default is None:
            _default = HybridIndex(warn_stale=True)
        return _default
