"""How well does the injection guard do? Caught, missed and false alarms, per category.

Every text goes through the validators a config goes through: ``validate_template`` /
``validate_prompt_variables`` for single texts, ``validate_config`` for ``config`` items
(template and variables together, so a link assembled from pieces is judged as composed).
Three sets, reported separately and never mixed:

* **held-out** ``bench/data/injection_heldout.json``: written apart from everything the
  guard was tuned on (committed before the rules and threshold were changed), never used to
  choose a rule or a threshold. These are the figures to quote.
* **tuning** ``tests/data/injection_eval.json``: the set the rules were developed against
  and the semantic threshold was chosen on; its figures are optimistic by construction.
* **bad_inputs** ``tests/data/bad_inputs.json`` (templates and prompt_variables sections):
  the shared bad-input corpus.

    python bench/injection_guard.py          # the figures
    python bench/injection_guard.py --tune   # how the semantic threshold was chosen
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from m11_tenant import intents  # noqa: E402
from m11_tenant.errors import ConfigValidationError, TemplateError  # noqa: E402
from m11_tenant.guard import check_injection, semantic_candidate  # noqa: E402
from m11_tenant.schema import validate_config  # noqa: E402
from m11_tenant.templates import (  # noqa: E402
    parse_template,
    validate_prompt_variables,
    validate_template,
)

HELD_OUT = ROOT / "bench" / "data" / "injection_heldout.json"
TUNING = ROOT / "tests" / "data" / "injection_eval.json"
BAD_INPUTS = ROOT / "tests" / "data" / "bad_inputs.json"


def refusal(kind: str, value: Any) -> str | None:
    """The validators' verdict: ``type: first words of the message`` if refused, else None."""
    try:
        if kind == "template":
            try:
                declared = parse_template(value).placeholders - {"query", "context"}
            except TemplateError:
                declared = frozenset()
            validate_template(value, declared)
        elif kind == "variable":
            validate_prompt_variables({"value": value})
        elif kind == "variables":
            validate_prompt_variables(value)
        else:  # a whole config: template and variables composed
            validate_config({"prompt_template": value["template"],
                             "prompt_variables": value["variables"]})
    except ConfigValidationError as exc:
        error = exc.errors[0]
        return f"{error.type}: {error.message}"
    return None


def layer(verdict: str) -> str:
    """Which layer refused: the guard's rule family, or the validator's error type."""
    kind, _, message = verdict.partition(": ")
    if kind != "injection":
        return kind
    for marker, name in (("(semantic layer", "semantic"), ("encoded text", "encoded"),
                         ("role marker", "role"), ("role header", "role"),
                         ("chat turn token", "role"),
                         ("phrase", "phrase"), ("request", "phrase"),
                         ("markdown image", "markup"), ("HTML", "markup"),
                         ("URL", "link"), ("link", "link")):
        if marker in message:
            return name
    return "other"


def rate(part: int, whole: int) -> str:
    return f"{part:>3}/{whole:<3} {100.0 * part / whole:5.1f}%" if whole else "   -"


def report(name: str, path: Path, items: list[dict[str, Any]], category_of: str) -> None:
    started = time.perf_counter()
    verdicts = {item["id"]: refusal(item["kind"], item["text"]) for item in items}
    per_item_ms = 1000 * (time.perf_counter() - started) / max(len(items), 1)
    attacks = [i for i in items if i["label"] == "attack"]
    benign = [i for i in items if i["label"] == "benign"]
    caught = [i for i in attacks if verdicts[i["id"]]]
    alarms = [i for i in benign if verdicts[i["id"]]]
    print(f"\n== {name}: {path.relative_to(ROOT)}  ({len(attacks)} attacks, "
          f"{len(benign)} benign)")
    print(f"  caught        {rate(len(caught), len(attacks))}")
    print(f"  false alarms  {rate(len(alarms), len(benign))}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[item.get(category_of) or item.get("domain") or "?"].append(item)
    print(f"  {'category':<22} {'caught':>14} {'missed':>6} {'false alarms':>14}  "
          "caught by layer")
    for category, members in sorted(groups.items(), key=lambda kv: (kv[1][0]["label"], kv[0])):
        atk = [i for i in members if i["label"] == "attack"]
        ben = [i for i in members if i["label"] == "benign"]
        hit = [i for i in atk if verdicts[i["id"]]]
        fps = [i for i in ben if verdicts[i["id"]]]
        layers = Counter(layer(verdicts[i["id"]]) for i in hit)
        print(f"  {category:<22} {rate(len(hit), len(atk)) if atk else '':>14} "
              f"{len(atk) - len(hit) if atk else '':>6} "
              f"{rate(len(fps), len(ben)) if ben else '':>14}  "
              + ", ".join(f"{k} {n}" for k, n in sorted(layers.items())))
    missed = [i["id"] for i in attacks if not verdicts[i["id"]]]
    print(f"  missed: {', '.join(missed) or '-'}")
    for item in alarms:
        print(f"  FALSE ALARM {item['id']}: {verdicts[item['id']]}")
    print(f"  mean validation time per item: {per_item_ms:.2f} ms (this machine, varies; "
          "first item includes loading the embedding model)")


def bad_inputs_report() -> None:
    corpus = json.loads(BAD_INPUTS.read_text("utf-8"))
    items = [{"id": it["id"], "kind": "template", "text": it["input"],
              "label": "attack" if it["expect"] == "reject" else "benign", "category": "templates"}
             for it in corpus["templates"]]
    items += [{"id": it["id"], "kind": "variables", "text": it["input"],
               "label": "attack" if it["expect"] == "reject" else "benign",
               "category": "prompt_variables"} for it in corpus["prompt_variables"]]
    report("bad_inputs (shared corpus; 'attack' = expect reject, syntax errors included)",
           BAD_INPUTS, items, "category")


def tune() -> None:
    """Sweep the semantic layer's threshold and margin on the TUNING set only.

    An attack counts as caught by the layer if any sentence of it is flagged; a benign
    item is a false alarm if any sentence is. The rule: the lowest threshold with no
    false alarm on the tuning set, plus 0.02 of headroom, then the smallest margin that
    keeps it there. The held-out set is not read.
    """
    items = json.loads(TUNING.read_text("utf-8"))["items"]
    rows = []
    for item in items:
        found = semantic_candidate(item["text"])
        rules = check_injection(item["text"], template=item["kind"] == "template",
                                semantic=False) is not None
        rows.append((item, found, rules))
    attacks = [r for r in rows if r[0]["label"] == "attack"]
    benign = [r for r in rows if r[0]["label"] == "benign"]
    print(f"Semantic layer sweep on the TUNING set {TUNING.relative_to(ROOT)} "
          f"({len(attacks)} attacks, {len(attacks) - sum(r[2] for r in attacks)} of them "
          f"missed by the rules; {len(benign)} benign)")
    print(f"{'threshold':>9} {'margin':>6} {'attacks flagged':>16} {'rule misses caught':>19} "
          f"{'false alarms':>13}")
    for margin in (0.0, 0.03, 0.05, 0.08):
        for step in range(0, 16):
            threshold = 0.50 + 0.02 * step
            hit = [r for r in attacks if r[1] and r[1].flagged(threshold, margin)]
            added = [r for r in hit if not r[2]]
            fps = [r for r in benign if r[1] and r[1].flagged(threshold, margin)]
            print(f"{threshold:>9.2f} {margin:>6.2f} {len(hit):>16} {len(added):>19} "
                  f"{len(fps):>13}  {' '.join(r[0]['id'] for r in fps)[:60]}")
    print(f"\nin use: THRESHOLD={intents.THRESHOLD} MARGIN={intents.MARGIN} "
          "(m11_tenant/intents.py)")
    print("highest-scoring benign sentences (what the threshold must stay above):")
    for item, found, _ in sorted((r for r in benign if r[1]), key=lambda r: -r[1].score)[:5]:
        print(f"  {found.score:.3f} margin {found.margin:+.3f} {found.intent:<22} "
              f"{item['id']}: {found.sentence[:60]!r}")
    print("\nreproduce: python bench/injection_guard.py --tune")


def main() -> None:
    if "--tune" in sys.argv[1:]:
        tune()
        return
    print("Injection guard: caught / missed / false alarms per category")
    held_out = json.loads(HELD_OUT.read_text("utf-8"))["items"]
    report("HELD-OUT set (never tuned on: quote these)", HELD_OUT, held_out, "category")
    tuning = json.loads(TUNING.read_text("utf-8"))["items"]
    report("TUNING set (rules and threshold chosen on it: optimistic)", TUNING, tuning,
           "technique")
    bad_inputs_report()
    print("\nreproduce: python bench/injection_guard.py")


if __name__ == "__main__":
    main()
