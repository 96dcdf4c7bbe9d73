"""The shipped corpus, eval set and precomputed embeddings (skipped until data/corpus/ exists)."""

import json
import math

import pytest

from m11_tenant.rag.corpus import CORPUS_DIR, Corpus, Passage, load_corpus, load_eval
from m11_tenant.rag.embed import MiniLMEmbedder, embeddings_path

shipped = pytest.mark.skipif(not (CORPUS_DIR / "passages.jsonl").is_file(),
                             reason="data/corpus/passages.jsonl not there yet")


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        Corpus((Passage("a", "A", "x"), Passage("a", "B", "y")))


def test_a_bad_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "title": "A", "text": "x"}\n{"id": "b", "title": \n')
    with pytest.raises(ValueError, match=r"p\.jsonl line 2"):
        load_corpus(path)


@shipped
def test_eval_questions_point_at_real_passages():
    corpus = load_corpus()
    ids = {p.id for p in corpus.passages}
    for q in load_eval():
        assert q.relevant and set(q.relevant) <= ids, q.qid


@shipped
def test_committed_embeddings_were_built_from_this_corpus():
    meta = json.loads(embeddings_path(MiniLMEmbedder.model_id).with_suffix(".json").read_text())
    assert meta["corpus_sha256"] == load_corpus().checksum, (
        "data/corpus changed since its embeddings were built: run `python -m m11_tenant.rag` "
        "and commit data/corpus/embeddings-*")


@shipped
def test_on_the_eval_set_a_hybrid_alpha_beats_both_ends():
    from m11_tenant.rag.index import get_default_index

    index = get_default_index()

    def ndcg(alpha: float) -> float:
        total = 0.0
        questions = load_eval()
        for q in questions:
            ranked = [h.passage.id for h in index.search(q.question, top_k=10, alpha=alpha).hits]
            dcg = sum(1 / math.log2(i + 2) for i, p in enumerate(ranked) if p in q.relevant)
            total += dcg / sum(1 / math.log2(i + 2) for i in range(min(10, len(q.relevant))))
        return total / len(questions)

    assert ndcg(0.5) > max(ndcg(0.0), ndcg(1.0))
