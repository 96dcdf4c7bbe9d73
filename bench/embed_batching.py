"""Does embedding several new questions in one MiniLM call cost less per question?

``/query`` with a question nobody asked before spends most of its CPU embedding it (about
5 ms for ~17 tokens). :class:`~m11_tenant.rag.index.EmbeddingBatcher` already embeds the
questions that are waiting together; this script measures, in process and on this CPU,
what that can save at best: the 80 eval questions embedded one call each, and in calls of
4, 8 and 16 (in eval order, so a batch is padded to its longest question as a burst of
real questions would be). Batch sizes are interleaved group by group so the neighbours'
load hits every size alike. It prints wall and CPU milliseconds per question (median over
groups), the speed-up against one call each, the padding share, and how far the batched
vectors are from the single-call ones (mean pooling must ignore padding: a batched vector
has to equal the single one to within float noise, cosine >= 0.99999).

    python bench/embed_batching.py [--rounds 5] [--sizes 1,4,8,16] [--threads 16]

Then 16 threads embed new questions through :class:`EmbeddingBatcher` (the retrieval
threads of ``/query`` do), under several settings: questions/s, CPU per question, and the
mean batch the batcher formed.

Measured on the 2-core shared machine (load 2.8-5.5, four runs): the batched vectors are
bit-identical to single calls (max |diff| 0). In eval order, batches of 4/8/16 cost
1.21-1.44x less wall and 1.24-1.39x less CPU per question than one call each, best at 8
(30 % of such a batch is padding); sorted by length first (2-11 % padding, which a live
burst cannot have) 1.5-2.1x. Through the batcher with 16 threads, its batches average
3.3-4.0 questions (7.3 one batch at a time) and cost 5.0-5.4 ms CPU per question against
6.6-6.9 without batching (1.25-1.3x); questions/s moved with the neighbours' load more than
with the setting (139-199 without batching, 163-185 as shipped). So micro-batching, which
is already shipped, saves at most ~1.4x of the embedding, not the 2x a new question needs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from m11_tenant.minilm import MiniLMEmbedder  # noqa: E402  (after the path is set)
from m11_tenant.rag.index import EmbeddingBatcher  # noqa: E402


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine in float64 (a float32 unit vector's self-dot is 1 only to ~1e-7)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure(embedder: MiniLMEmbedder, questions: list[str], lengths: list[int], sizes: list[int],
            rounds: int, title: str) -> None:
    """Print one table: each batch size over ``questions`` in the order given."""
    group = max(sizes)
    wall: dict[int, list[float]] = {b: [] for b in sizes}
    cpu: dict[int, list[float]] = {b: [] for b in sizes}
    vectors: dict[int, np.ndarray] = {}
    for n in range(rounds):
        for start in range(0, len(questions), group):
            chunk = questions[start:start + group]
            order = sizes if (n + start // group) % 2 == 0 else sizes[::-1]
            for b in order:
                w0, c0 = time.perf_counter(), time.process_time()
                rows = [embedder.embed(chunk[i:i + b]) for i in range(0, group, b)]
                wall[b].append((time.perf_counter() - w0) * 1e3 / group)
                cpu[b].append((time.process_time() - c0) * 1e3 / group)
                if n == 0:
                    vectors.setdefault(b, np.zeros((len(questions), embedder.dim), np.float32))
                    vectors[b][start:start + group] = np.concatenate(rows)

    reference = vectors[1]
    print(f"\n{title}")
    base_wall, base_cpu = statistics.median(wall[1]), statistics.median(cpu[1])
    print(f"{'batch':>5}{'wall ms/q':>11}{'CPU ms/q':>10}{'speed-up wall':>15}"
          f"{'speed-up CPU':>14}{'padding':>9}{'min cos':>11}{'max |diff|':>12}")
    for b in sizes:
        padded = sum(b * max(lengths[i:i + b]) for i in range(0, len(lengths), b))
        w, c = statistics.median(wall[b]), statistics.median(cpu[b])
        cosine = float(cosines(vectors[b], reference).min())
        diff = float(np.abs(vectors[b] - reference).max())
        print(f"{b:>5}{w:>11.2f}{c:>10.2f}{base_wall / w:>14.2f}x{base_cpu / c:>13.2f}x"
              f"{1 - sum(lengths) / padded:>9.0%}{cosine:>11.7f}{diff:>12.1e}")


class Counted:
    """The embedder, counting its calls (how big the batcher's batches were)."""

    def __init__(self, embedder: MiniLMEmbedder):
        self.embedder, self.model_id, self.dim, self.calls = embedder, embedder.model_id, \
            embedder.dim, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return self.embedder.embed(texts)


def run_callers(batcher: EmbeddingBatcher, texts: list[str], threads: int) -> None:
    """``threads`` callers, each embedding its share of ``texts`` one after another."""
    def caller(share: list[str]) -> None:
        for text in share:
            batcher.embed(text)

    workers = [threading.Thread(target=caller, args=(texts[i::threads],))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def concurrent(embedder: MiniLMEmbedder, questions: list[str], threads: int,
               rounds: int) -> None:
    """``threads`` callers embedding new questions through an :class:`EmbeddingBatcher` (as
    ``/query``'s retrieval threads do), settings interleaved round by round."""
    settings = [(1, 1, "no batching, one call at a time"),
                (1, 2, "no batching, 2 calls side by side"),
                (4, 2, "<= 4, 2 side by side"),
                (8, 2, "shipped: <= 8, 2 side by side"),
                (8, 1, "<= 8, one at a time")]
    rates: dict[str, list[float]] = {name: [] for _, _, name in settings}
    cpus: dict[str, list[float]] = {name: [] for _, _, name in settings}
    sizes: dict[str, list[float]] = {name: [] for _, _, name in settings}
    for n in range(rounds):
        for max_batch, parallel, name in settings if n % 2 == 0 else settings[::-1]:
            counted = Counted(embedder)
            batcher = EmbeddingBatcher(counted, max_batch=max_batch, parallel=parallel)
            texts = [f"{q} ({n}, {max_batch}, {parallel})" for q in questions]
            w0, c0 = time.perf_counter(), time.process_time()
            run_callers(batcher, texts, threads)
            rates[name].append(len(texts) / (time.perf_counter() - w0))
            cpus[name].append((time.process_time() - c0) * 1e3 / len(texts))
            sizes[name].append(len(texts) / counted.calls)
    print(f"\n{threads} threads embedding new questions through EmbeddingBatcher "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"{'setting':<36}{'questions/s':>12}{'CPU ms/q':>10}{'mean batch':>12}")
    for _, _, name in settings:
        print(f"{name:<36}{statistics.median(rates[name]):>12.0f}"
              f"{statistics.median(cpus[name]):>10.2f}{statistics.median(sizes[name]):>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the questions")
    parser.add_argument("--threads", type=int, default=16,
                        help="concurrent callers for the EmbeddingBatcher part (0: skip it)")
    parser.add_argument("--sizes", default="1,4,8,16", help="batch sizes; 1 is the reference")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {1})
    group = max(sizes)

    from m11_tenant.rag import load_eval

    questions = [q.question for q in load_eval()]
    questions = questions[:len(questions) // group * group]
    embedder = MiniLMEmbedder()
    embedder.embed(questions[:group])  # warm
    lengths = [len(embedder.tokenizer.encode(q).ids) for q in questions]
    print(f"{len(questions)} eval questions, tokens median {statistics.median(lengths):.0f} "
          f"(min {min(lengths)}, max {max(lengths)}); {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    by_length = sorted(range(len(questions)), key=lambda i: lengths[i])
    for title, idx in (("eval order (a burst of real questions)", list(range(len(questions)))),
                       ("sorted by length first (least padding: a ceiling)", by_length)):
        measure(embedder, [questions[i] for i in idx], [lengths[i] for i in idx], sizes,
                args.rounds, title)
    if args.threads:
        concurrent(embedder, questions, args.threads, args.rounds)
    print("reproduce: python bench/embed_batching.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
