"""Hybrid retrieval: what top_k, alpha and reranking do to the sources (as documented)."""

import threading
import time

import numpy as np
import pytest
from rag_support import fixture_index

from m11_tenant.rag.index import EmbeddingBatcher, minmax
from m11_tenant.rag.rerank import RERANKERS

CACHE_Q = "What happens when everyone misses the cache at once?"
E1234_Q = "What does the ingestion worker log code E1234 mean?"


def ids(retrieval):
    return [h.passage.id for h in retrieval.hits]


def test_minmax_maps_to_unit_range_and_a_flat_vector_to_zeros():
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]


def test_top_k_sets_how_many_sources_come_back():
    ix = fixture_index()
    for k in (1, 3, 7):
        assert len(ix.search(CACHE_Q, top_k=k).hits) == k
    # a larger top_k extends, never reorders, the list
    assert ids(ix.search(CACHE_Q, top_k=7))[:3] == ids(ix.search(CACHE_Q, top_k=3))


def test_alpha_zero_ranks_exactly_by_bm25_and_one_exactly_by_cosine():
    ix = fixture_index()
    bm25, cosine, _ = ix.score_all(CACHE_Q)
    n = len(ix)
    assert ids(ix.search(CACHE_Q, top_k=3, alpha=0.0)) == [
        ix.corpus.passages[i].id for i in np.lexsort((np.arange(n), -bm25))[:3]]
    assert ids(ix.search(CACHE_Q, top_k=3, alpha=1.0)) == [
        ix.corpus.passages[i].id for i in np.lexsort((np.arange(n), -cosine))[:3]]


def test_alpha_changes_the_sources():
    ix = fixture_index()
    # Keyword-only ranks the embeddings passage first (it shares the word "misses");
    # semantic-only finds the cache-stampede passage, which says it in other words.
    assert ids(ix.search(CACHE_Q, top_k=1, alpha=0.0)) == ["f06"]
    assert ids(ix.search(CACHE_Q, top_k=1, alpha=1.0)) == ["f04"]
    assert ids(ix.search(CACHE_Q, top_k=3, alpha=0.0)) != ids(ix.search(CACHE_Q, top_k=3,
                                                                         alpha=1.0))


def test_hybrid_scores_are_the_documented_mix():
    ix = fixture_index()
    for hit in ix.search(E1234_Q, top_k=5, alpha=0.25).hits:
        assert hit.score == pytest.approx(0.25 * hit.semantic + 0.75 * hit.keyword, abs=1e-6)
        assert 0.0 <= hit.score <= 1.0


def test_reranking_reorders_the_top_k_candidates_and_keeps_rerank_top_n():
    ix = fixture_index()
    plain = ix.search(CACHE_Q, top_k=5, alpha=0.0)
    reranked = ix.search(CACHE_Q, top_k=5, alpha=0.0, rerank=True, rerank_top_n=2,
                         reranker="cosine")
    assert reranked.reranked and len(reranked.hits) == 2
    assert set(ids(reranked)) <= set(ids(plain))  # only candidates come back
    assert ids(reranked) != ids(plain)[:2]
    assert ids(reranked)[0] == "f04"  # cosine re-sort rescues the paraphrase match
    cosines = [h.cosine for h in reranked.hits]
    assert cosines == sorted(cosines, reverse=True)


def test_rerank_top_n_none_follows_top_k():
    ix = fixture_index()
    assert len(ix.search(CACHE_Q, top_k=4, rerank=True, rerank_top_n=None).hits) == 4


@pytest.mark.parametrize("name", sorted(RERANKERS))
def test_every_reranker_returns_a_permutation_of_the_candidates(name):
    r = fixture_index().search(CACHE_Q, top_k=6, alpha=0.5, rerank=True, reranker=name)
    assert sorted(ids(r)) == sorted(h.passage.id for h in r.candidates)


def test_search_is_deterministic():
    ix = fixture_index()
    a = ix.search(E1234_Q, top_k=8, alpha=0.5, rerank=True, rerank_top_n=5)
    b = ix.search(E1234_Q, top_k=8, alpha=0.5, rerank=True, rerank_top_n=5)
    assert [(h.passage.id, h.score) for h in a.hits] == [(h.passage.id, h.score) for h in b.hits]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 1.5}, "alpha"), ({"top_k": 0}, "top_k")])
def test_out_of_range_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fixture_index().search(CACHE_Q, **kwargs)


def test_the_rrf_reranker_fuses_keyword_and_semantic_ranks():
    ix = fixture_index()
    r = ix.search(CACHE_Q, top_k=5, alpha=0.0, rerank=True, reranker="rrf")
    assert r.reranker == "rrf"
    n = len(r.candidates)
    kw_rank = {h.passage.id: i for i, h in enumerate(sorted(r.candidates, key=lambda h: -h.bm25))}
    sem_rank = {h.passage.id: i for i, h in
                enumerate(sorted(r.candidates, key=lambda h: -h.cosine))}
    for h in r.hits:
        assert h.score == pytest.approx(1 / (61 + kw_rank[h.passage.id])
                                        + 1 / (61 + sem_rank[h.passage.id]))
    assert ids(r)[0] == "f04" and n == 5


def test_query_vectors_are_cached_by_text():
    ix = fixture_index()
    v1 = ix.embed_query("a question asked by every tenant")
    assert ix.embed_query("a question asked by every tenant") is v1


def test_the_default_coverage_reranker_mixes_term_coverage_and_cosine():
    ix = fixture_index()
    r = ix.search(E1234_Q, top_k=6, alpha=0.0, rerank=True, rerank_top_n=3)
    assert r.reranker == "coverage" and len(r.hits) == 3
    for h in r.hits:
        assert h.score == pytest.approx(0.5 * h.coverage + 0.5 * h.semantic, abs=1e-6)
    assert [h.score for h in r.hits] == sorted((h.score for h in r.hits), reverse=True)
    assert ids(r)[0] == "f09"


def test_coverage_weighs_rare_terms_more_and_ignores_repetition():
    from m11_tenant.rag.bm25 import BM25

    index = BM25(["tenant tenant tenant tenant", "tenant isolation", "isolation", "tenant"])
    cov = index.coverage("tenant isolation")
    assert cov[1] == pytest.approx(1.0)
    assert cov[0] < cov[2] < cov[1]  # "isolation" is rarer than "tenant"
    assert index.coverage("tenant isolation", [2, 1]).tolist() == [cov[2], cov[1]]


class SlowEmbedder:
    """Counts calls; each call takes a while, so concurrent questions pile up behind it."""

    model_id, dim = "slow-test", 2

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def embed(self, texts):
        self.calls.append(list(texts))
        time.sleep(0.05)
        if self.fail_on in texts:
            raise RuntimeError("model failed (test)")
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def run_concurrently(batcher, texts):
    results, errors = {}, []

    def ask(text):
        try:
            results[text] = batcher.embed(text)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_new_questions_are_embedded_in_batches():
    model = SlowEmbedder()
    texts = [f"question {'x' * n}" for n in range(12)]
    results, errors = run_concurrently(EmbeddingBatcher(model, parallel=1), texts)
    assert not errors and sorted(t for call in model.calls for t in call) == sorted(texts)  # each text once
    assert len(model.calls) < len(texts)  # some calls carried several questions
    for text in texts:
        assert results[text].tolist() == [len(text), 1.0]  # each caller got its own vector


def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs():
    batcher = EmbeddingBatcher(SlowEmbedder(fail_on="bad"))
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.embed("bad")
    assert batcher.embed("good").tolist() == [4.0, 1.0]


def test_batches_run_side_by_side_up_to_parallel():
    class Counting(SlowEmbedder):
        def __init__(self):
            super().__init__()
            self.now = self.peak = 0
            self.lock = threading.Lock()

        def embed(self, texts):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                return super().embed(texts)
            finally:
                with self.lock:
                    self.now -= 1

    model = Counting()
    results, errors = run_concurrently(EmbeddingBatcher(model, max_batch=2, parallel=2),
                                       [f"q{n}" for n in range(10)])
    assert not errors and len(results) == 10
    assert model.peak == 2 and all(len(call) <= 2 for call in model.calls)
