"""How well does the injection guard do? Caught, missed and false alarms, measured.

Runs the validators a config goes through (``validate_template`` /
``validate_prompt_variables``: character policy, syntax, then the guard) over

* the labelled eval set ``tests/data/injection_eval.json`` (attacks incl. obfuscations,
  and benign tenant templates/variables from legal, support, dev-tools, healthcare, ...);
* the templates and prompt_variables sections of ``tests/data/bad_inputs.json``;

and prints the figures, the misses by id, and the command that reproduces them.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from m11_tenant.errors import TemplateError  # noqa: E402
from m11_tenant.guard import find_forbidden_character, find_injection  # noqa: E402
from m11_tenant.templates import (  # noqa: E402
    parse_template,
    validate_prompt_variables,
    validate_template,
)

DATA = ROOT / "tests" / "data"


def refusal(kind: str, value: object) -> str | None:
    """The validators' verdict: the error type if refused, else None."""
    try:
        if kind == "template":
            assert isinstance(value, str)
            try:
                declared = parse_template(value).placeholders - {"query", "context"}
            except TemplateError:
                declared = frozenset()
            validate_template(value, declared)
        elif kind == "variable":
            validate_prompt_variables({"value": value})
        else:
            validate_prompt_variables(value)  # type: ignore[arg-type]
    except TemplateError as exc:
        return exc.errors[0].type
    return None


def guard_alone(text: str, template: bool) -> bool:
    return (find_forbidden_character(text) is not None
            or find_injection(text, template=template) is not None)


def rate(part: int, whole: int) -> str:
    return f"{part:>3}/{whole:<3} {100.0 * part / whole:5.1f}%" if whole else "  -"


def main() -> None:
    items = json.loads((DATA / "injection_eval.json").read_text("utf-8"))["items"]
    attacks = [i for i in items if i["label"] == "attack"]
    benign = [i for i in items if i["label"] == "benign"]
    started = time.perf_counter()
    verdicts = {i["id"]: refusal(i["kind"], i["text"]) for i in items}
    per_item_ms = 1000 * (time.perf_counter() - started) / len(items)

    missed = [i["id"] for i in attacks if verdicts[i["id"]] is None]
    alarms = [i["id"] for i in benign if verdicts[i["id"]] is not None]
    alone = sum(guard_alone(i["text"], i["kind"] == "template") for i in attacks)
    alone_fp = sum(guard_alone(i["text"], i["kind"] == "template") for i in benign)

    print("Injection guard: caught / missed / false alarms")
    print(f"\neval set  tests/data/injection_eval.json  ({len(attacks)} attacks, "
          f"{len(benign)} benign)")
    print(f"  caught        {rate(len(attacks) - len(missed), len(attacks))}")
    print(f"  missed        {rate(len(missed), len(attacks))}  {', '.join(missed)}")
    print(f"  false alarms  {rate(len(alarms), len(benign))}  {', '.join(alarms)}")
    print(f"  guard alone (character policy + find_injection, no syntax checks): caught "
          f"{rate(alone, len(attacks))}, false alarms {rate(alone_fp, len(benign))}")
    by_tech: Counter[str] = Counter(i["technique"] for i in attacks)
    hit: Counter[str] = Counter(i["technique"] for i in attacks if verdicts[i["id"]])
    print("  caught by technique: " + ", ".join(f"{t} {hit[t]}/{n}"
                                                for t, n in sorted(by_tech.items())))
    refused_by: Counter[str] = Counter(v for v in verdicts.values() if v)
    print("  refusals by error type: " + ", ".join(f"{k} {n}"
                                                   for k, n in sorted(refused_by.items())))
    print(f"  mean validation time per item: {per_item_ms:.2f} ms (this machine, varies)")

    corpus = json.loads((DATA / "bad_inputs.json").read_text("utf-8"))
    rows = [("template", item) for item in corpus["templates"]]
    rows += [("variables", item) for item in corpus["prompt_variables"]]
    rejects = [(kind, item) for kind, item in rows if item["expect"] == "reject"]
    accepts = [(kind, item) for kind, item in rows if item["expect"] == "accept_safely"]
    c_missed = [item["id"] for kind, item in rejects if refusal(kind, item["input"]) is None]
    c_alarms = [item["id"] for kind, item in accepts if refusal(kind, item["input"])]
    print(f"\nbad_inputs  tests/data/bad_inputs.json  templates + prompt_variables "
          f"({len(rejects)} reject, {len(accepts)} accept_safely)")
    print(f"  caught        {rate(len(rejects) - len(c_missed), len(rejects))}")
    print(f"  missed        {rate(len(c_missed), len(rejects))}  {', '.join(c_missed)}")
    print(f"  false alarms  {rate(len(c_alarms), len(accepts))}  {', '.join(c_alarms)}")
    c_types: Counter[str] = Counter(
        v for kind, item in rejects if (v := refusal(kind, item["input"])))
    print("  refusals by error type: " + ", ".join(f"{k} {n}"
                                                   for k, n in sorted(c_types.items())))

    print("\nreproduce: python bench/injection_guard.py")


if __name__ == "__main__":
    main()
