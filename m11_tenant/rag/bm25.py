"""Keyword scoring: BM25 in a few lines of numpy, so a learner can read every step.

This is Lucene's BM25 (the ``method="lucene"`` variant of the bm25s library, with its
defaults k1=1.5, b=0.75): for a query term t and document d,

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(d) += idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

Because the query only selects columns, every term's contribution to every document is
computed once at build time (``weights``, documents x vocabulary). Scoring a query is then a
column sum: microseconds for a few hundred passages. A dense matrix is right at this size; a
corpus of millions would keep the same formula in a sparse matrix (as bm25s does).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"(?u)\b\w\w+\b")

#: A short English stop list: words that match everywhere and rank nothing.
STOPWORDS = frozenset(
    """
    a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours
    """.split()  # noqa: SIM905 (a word list reads better as prose)
)


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of two or more characters, stop words removed."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


class BM25:
    """A BM25 index over a fixed list of documents (row ``i`` is document ``i``)."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        docs = [Counter(tokenize(d)) for d in documents]
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(sorted(set().union(*docs)))}
        n_docs, n_terms = len(docs), len(self.vocab)
        tf = np.zeros((n_docs, n_terms), dtype=np.float32)
        for row, counts in enumerate(docs):
            for term, count in counts.items():
                tf[row, self.vocab[term]] = count
        doc_len = tf.sum(axis=1)
        avgdl = float(doc_len.mean()) if n_docs else 0.0
        df = (tf > 0).sum(axis=0)
        self.idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1.0 - b + b * doc_len / max(avgdl, 1e-9))
        self.weights = (self.idf * tf / (tf + norm[:, None])).astype(np.float32)

    def __len__(self) -> int:
        return self.weights.shape[0]

    def coverage(self, query: str, rows: Sequence[int] | None = None) -> np.ndarray:
        """Share of the query's distinct known terms each document contains, weighted by idf
        (1.0 = every term, rare ones count more). BM25 sums saturated term frequencies, so a
        passage repeating one term can outscore one containing them all; this cannot."""
        cols = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        n = len(self) if rows is None else len(rows)
        if not cols:
            return np.zeros(n, dtype=np.float32)
        weights = self.weights[:, cols] if rows is None else self.weights[np.asarray(rows)][:, cols]
        idf = self.idf[cols]
        return ((weights > 0) @ idf / idf.sum()).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros if no query term is known)."""
        cols = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        if not cols:
            return np.zeros(len(self), dtype=np.float32)
        return self.weights[:, cols].sum(axis=1)
