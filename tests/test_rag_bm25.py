"""BM25: the numpy formula against hand-computed values, and its edge cases."""

import math

import numpy as np
import pytest

from m11_tenant.rag.bm25 import BM25, tokenize


def test_tokenize_lowercases_drops_stopwords_and_single_characters():
    assert tokenize("The Cache of a B-tree is HOT") == ["cache", "tree", "hot"]


def test_scores_match_the_lucene_formula_by_hand():
    docs = ["apple banana apple", "banana cherry", "cherry cherry cherry durian"]
    index = BM25(docs, k1=1.5, b=0.75)
    lengths = [3, 2, 4]
    avgdl = sum(lengths) / 3
    df_apple = 1
    idf = math.log(1 + (3 - df_apple + 0.5) / (df_apple + 0.5))
    tf = 2
    expected = idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * lengths[0] / avgdl))
    scores = index.scores("apple")
    assert scores[0] == pytest.approx(expected, rel=1e-6)
    assert scores[1] == scores[2] == 0


def test_rarer_terms_weigh_more_and_repeated_query_words_count_once():
    index = BM25(["common rare", "common", "common"])
    assert index.idf[index.vocab["rare"]] > index.idf[index.vocab["common"]]
    np.testing.assert_array_equal(index.scores("rare rare"), index.scores("rare"))


def test_a_query_with_no_known_word_scores_zero_everywhere():
    index = BM25(["alpha beta", "gamma"])
    assert index.scores("the of zzz").tolist() == [0.0, 0.0]


def test_shorter_documents_win_at_equal_term_frequency():
    index = BM25(["tenant", "tenant plus many other words here"])
    s = index.scores("tenant")
    assert s[0] > s[1] > 0
