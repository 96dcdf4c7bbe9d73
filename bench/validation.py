"""How long validating a tenant config takes: a new template vs one already seen.

The injection guard is the expensive part (its rules take milliseconds per text; its
semantic layer embeds each sentence it has not seen before), so the schema remembers
templates and variables that passed; this prints the paths: seen before, a new template
whose sentences are known (an edit that adds no sentence), and one with a new sentence.

    python bench/validation.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from m11_tenant.schema import parse_json_object, validate_config

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 2000


def per_call_us(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def main() -> None:
    tenants = json.loads((ROOT / "data" / "tenants.json").read_text())["tenants"]
    config = validate_config(tenants[1]["config"]).model_dump()  # enterprise-corp
    body = json.dumps({"config": config, "merge": True})

    def fresh_template(i: int) -> None:  # a template the process has never seen
        validate_config({**config, "prompt_template": config["prompt_template"] + f" #{i}"})

    def fresh_sentence(i: int) -> None:  # ... with a sentence never embedded before
        validate_config({**config, "prompt_template": config["prompt_template"]
                         + f"\nMention ticket number {i} when it helps."})

    rows = [
        ("validate_config, template seen before (cache reads)", lambda i: validate_config(config)),
        ("validate_config, new template (a write)", fresh_template),
        ("validate_config, new template with a new sentence", fresh_sentence),
        ("parse_json_object, 1 KB body", lambda i: parse_json_object(body)),
    ]
    print(f"{'path':<55} {'p50 us':>8} {'p95 us':>8}")
    for name, fn in rows:
        p50, p95 = per_call_us(fn, 300 if "new template" in name else ROUNDS)
        print(f"{name:<55} {p50:>8.1f} {p95:>8.1f}")
    print("\nreproduce: python bench/validation.py")


if __name__ == "__main__":
    main()
