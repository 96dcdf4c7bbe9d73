"""The offline embedder: pinned files, unit vectors, meaning, and the precomputed-vector cache."""

import shutil

import numpy as np
import pytest
from rag_support import embedder

from m11_tenant.rag.corpus import Corpus, Passage
from m11_tenant.rag.embed import (
    TOKENIZER_PATH,
    EmbeddingModelError,
    MiniLMEmbedder,
    embeddings_path,
    load_or_build_embeddings,
)


def test_vectors_are_unit_length_and_deterministic():
    e = embedder()
    v = e.embed(["tenant isolation", "a cache stampede", ""])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, e.embed(["tenant isolation", "a cache stampede", ""]))


def test_batching_does_not_change_a_vector():
    e = embedder()
    alone = e.embed(["How do I keep one customer's data away from another?"])[0]
    batched = e.embed(["short", "How do I keep one customer's data away from another?",
                       "a much longer sentence " * 20])[1]
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_text():
    q, para, other = embedder().embed([
        "How can I stop one customer from seeing another customer's records?",
        "Keep each tenant's data isolated from other tenants.",
        "The recipe needs two eggs and a cup of flour.",
    ])
    assert q @ para > q @ other + 0.2


def test_a_tampered_tokenizer_is_refused(tmp_path):
    bad = tmp_path / "tokenizer.json"
    shutil.copy(TOKENIZER_PATH, bad)
    bad.write_bytes(bad.read_bytes().replace(b'"[UNK]"', b'"[UNX]"', 1))
    with pytest.raises(EmbeddingModelError, match="sha256"):
        MiniLMEmbedder(tokenizer_path=bad)


def test_a_missing_model_file_is_refused(tmp_path):
    with pytest.raises(EmbeddingModelError, match="not found"):
        MiniLMEmbedder(model_path=tmp_path / "model.onnx")


class CountingEmbedder:
    model_id, dim = "counting-test", 4

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        v = np.array([[len(t), 1.0, 0.0, 0.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_corpus_vectors_are_reused_until_the_corpus_changes(tmp_path):
    corpus = Corpus((Passage("a", "A", "alpha text"), Passage("b", "B", "beta")))
    emb = CountingEmbedder()
    first = load_or_build_embeddings(corpus, emb, directory=tmp_path)
    assert embeddings_path(emb.model_id, tmp_path).is_file()
    again = load_or_build_embeddings(corpus, emb, directory=tmp_path)
    assert emb.calls == 1
    np.testing.assert_array_equal(first, again)
    changed = Corpus((Passage("a", "A", "alpha text, edited"), Passage("b", "B", "beta")))
    load_or_build_embeddings(changed, emb, directory=tmp_path)
    assert emb.calls == 2  # stale checksum: rebuilt


def test_the_openai_embedder_speaks_the_same_interface_through_an_injected_client():
    from types import SimpleNamespace

    from m11_tenant.rag.embed import Embedder, OpenAIEmbedder

    calls = []

    def create(model, input):
        calls.append((model, list(input)))
        data = [SimpleNamespace(index=i, embedding=[3.0, 4.0]) for i in range(len(input))]
        return SimpleNamespace(data=list(reversed(data)))

    client = SimpleNamespace(embeddings=SimpleNamespace(create=create))
    e = OpenAIEmbedder(client, model="text-embedding-3-small", dim=2)
    assert isinstance(e, Embedder) and e.model_id == "openai-text-embedding-3-small"
    np.testing.assert_allclose(e.embed(["a", "b"]), [[0.6, 0.8], [0.6, 0.8]])
    assert calls == [("text-embedding-3-small", ["a", "b"])]


def test_stale_shipped_vectors_are_recomputed_with_a_warning_not_used(tmp_path):
    corpus = Corpus((Passage("a", "A", "alpha"),))
    emb = CountingEmbedder()
    with pytest.warns(UserWarning, match="python -m m11_tenant.rag"):
        load_or_build_embeddings(corpus, emb, directory=tmp_path, save=False, warn_stale=True)
    assert emb.calls == 1 and not embeddings_path(emb.model_id, tmp_path).exists()
