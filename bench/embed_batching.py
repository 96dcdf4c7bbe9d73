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

    python bench/embed_batching.py [--rounds 5] [--sizes 1,4,8,16]

Measured on the 2-core shared machine (load 2.8-3.4, three runs): the batched vectors are
bit-identical to single calls (max |diff| 0). In eval order, batches of 4/8/16 cost
1.24-1.44x less wall and 1.24-1.39x less CPU per question than one call each, best at 8
(30 % of the batch is padding); sorted by length first (2-11 % padding, which a live burst
cannot have) 1.6-2.1x. So micro-batching saves at most ~1.4x of the embedding, not the 2x
a new question would need.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from m11_tenant.minilm import MiniLMEmbedder  # noqa: E402  (after the path is set)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the questions")
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
    print("reproduce: python bench/embed_batching.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
