"""Semantic scoring: sentence embeddings behind a one-method interface.

The default :class:`~m11_tenant.minilm.MiniLMEmbedder` (all-MiniLM-L6-v2 offline, int8
ONNX, sha256-pinned) lives in :mod:`m11_tenant.minilm`, below both ``rag`` and the injection
guard, which uses the same model for its semantic layer; it is re-exported here.

:class:`OpenAIEmbedder` is the same interface over the OpenAI embeddings API, for a keyed
deployment. Corpus vectors are precomputed once per (corpus, model) into ``data/corpus/``
by :func:`load_or_build_embeddings`; at query time only the question is embedded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from m11_tenant.minilm import (  # noqa: F401  (the first three re-exported: rag's embedder API)
    TOKENIZER_PATH,
    EmbeddingModelError,
    MiniLMEmbedder,
    normalise_rows,
)
from m11_tenant.rag.corpus import CORPUS_DIR, Corpus


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; ``model_id`` names the vector space."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape (len(texts), dim), float32, each row of unit length."""
        ...


class OpenAIEmbedder:
    """OpenAI embeddings behind the same interface (used only when a deployment asks for it).

    ``client`` is an ``openai.OpenAI`` (or anything with ``embeddings.create``).
    """

    def __init__(self, client: Any, model: str = "text-embedding-3-small", dim: int = 1536):
        self.client, self.model, self.dim = client, model, dim
        self.model_id = f"openai-{model}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), 256):
            batch = list(texts[start:start + 256])
            resp = self.client.embeddings.create(model=self.model, input=batch)
            rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        return normalise_rows(np.asarray(rows, dtype=np.float32))


def passage_text(title: str, text: str) -> str:
    """What gets embedded for a passage: its title carries topic words the text may not repeat."""
    return f"{title}. {text}"


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)


def embeddings_path(model_id: str, directory: Path | None = None) -> Path:
    return (directory or CORPUS_DIR) / f"embeddings-{_slug(model_id)}.npy"


def load_or_build_embeddings(corpus: Corpus, embedder: Embedder, *,
                             directory: Path | None = None, save: bool = True,
                             warn_stale: bool = False) -> np.ndarray:
    """The corpus vectors for ``embedder``: read from ``data/corpus/`` if they were built from
    this exact corpus (checksum) and model, otherwise computed now and (if ``save``) written
    back atomically next to a small JSON file that records what they were built from.

    ``warn_stale`` warns when vectors had to be computed: the shipped corpus should always
    come with its vectors (``python -m m11_tenant.rag`` rebuilds and saves them).
    """
    npy = embeddings_path(embedder.model_id, directory)
    meta_path = npy.with_suffix(".json")
    want = {"model_id": embedder.model_id, "corpus_sha256": corpus.checksum,
            "count": len(corpus), "dim": embedder.dim}
    if npy.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            vectors = np.load(npy)
            if meta == want and vectors.shape == (len(corpus), embedder.dim):
                return vectors.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass  # unreadable: rebuild below
    if warn_stale:
        warnings.warn(
            f"{npy.name} was not built from this corpus: embedding {len(corpus)} passages now "
            "(slow); run `python -m m11_tenant.rag` and commit data/corpus/embeddings-*",
            stacklevel=2,
        )
    vectors = embedder.embed([passage_text(p.title, p.text) for p in corpus.passages])
    if save:
        try:
            npy.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=npy.parent, suffix=".npy", delete=False) as fh:
                np.save(fh, vectors)
            os.chmod(fh.name, 0o644)  # a temp file is created 0600
            os.replace(fh.name, npy)
            meta_path.write_text(json.dumps(want, indent=2) + "\n")
        except OSError:
            pass  # read-only checkout: keep the vectors in memory only
    return vectors
