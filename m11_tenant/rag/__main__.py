"""``python -m m11_tenant.rag``: (re)build the precomputed corpus embeddings if stale.

Run it after ``data/corpus/passages.jsonl`` changes; it prints what it found and did.
Notebooks and the API then only embed questions.
"""

from __future__ import annotations

import json
import sys
import time

from m11_tenant.rag.corpus import load_corpus
from m11_tenant.rag.embed import MiniLMEmbedder, embeddings_path, load_or_build_embeddings


def main() -> int:
    corpus = load_corpus()
    embedder = MiniLMEmbedder()
    meta_path = embeddings_path(embedder.model_id).with_suffix(".json")
    before = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    fresh = before is not None and before.get("corpus_sha256") == corpus.checksum
    t0 = time.perf_counter()
    vectors = load_or_build_embeddings(corpus, embedder)
    took = time.perf_counter() - t0
    state = "up to date" if fresh else f"rebuilt in {took:.1f} s"
    print(f"{embeddings_path(embedder.model_id).name}: {vectors.shape[0]} passages x "
          f"{vectors.shape[1]} dims, corpus {corpus.checksum[:12]}, {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
