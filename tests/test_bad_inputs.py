"""The adversarial corpus (tests/data/bad_inputs.json), end to end through the repository.

Every ``reject`` item must raise a clear ConfigValidationError and leave the database,
its history and its audit log exactly as they were; every ``accept_safely`` item must be
stored and, where it is a template or variable, render without leaking anything.
The corpus is a copy of ../shared/samples/bad_inputs.json (the team's shared sample).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from m11_tenant.errors import ConfigValidationError
from m11_tenant.schema import parse_json_object
from m11_tenant.templates import render_template

CORPUS = json.loads((Path(__file__).parent / "data" / "bad_inputs.json").read_text("utf-8"))
LEAK_MARKERS = ("__class__", "__globals__", "<built-in", "object at 0x", "<script")


def items(section: str) -> list:
    return [pytest.param(item, id=item["id"]) for item in CORPUS[section]]


def raw_input(item: dict) -> str:
    if item.get("generate"):
        return "".join(part["text"] * part["times"] for part in item["generate"])
    return item["input"]


def snapshot(repo, tenant_id: str) -> tuple:
    return (repo.count_tenants(), len(repo.get_audit_log(limit=100_000)),
            repo.get_record(tenant_id).version)


def assert_rejected_and_nothing_changed(repo, tenant_id: str, write) -> ConfigValidationError:
    before = snapshot(repo, tenant_id) if _valid_id(tenant_id) else None
    with pytest.raises(ConfigValidationError) as err:
        write()
    assert err.value.errors and all(e.field and e.message for e in err.value.errors)
    if before is not None:
        assert snapshot(repo, tenant_id) == before
    return err.value


def _valid_id(tenant_id: str) -> bool:
    return re.fullmatch(r"[a-z0-9][a-z0-9_-]{2,63}", tenant_id) is not None


def assert_renders_safely(config, query: str = "What is BM25?") -> str:
    text = render_template(config.prompt_template, query=query, context="[1] passage",
                           variables=config.prompt_variables)
    assert not any(marker in text for marker in LEAK_MARKERS)
    return text


@pytest.mark.parametrize("item", items("tenant_ids"))
def test_tenant_ids(sqlite_repo, item):
    tenant_id = item["input"]
    if item["expect"] == "reject":
        count = sqlite_repo.count_tenants()
        err = assert_rejected_and_nothing_changed(
            sqlite_repo, tenant_id, lambda: sqlite_repo.update_config(tenant_id, {"top_k": 3}))
        assert err.errors[0].field == "tenant_id"
        assert sqlite_repo.count_tenants() == count
    else:
        assert sqlite_repo.update_config(tenant_id, {"top_k": 3}).version == 1
        assert sqlite_repo.list_tenants() == [tenant_id]


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "replace"])
@pytest.mark.parametrize("item", items("config_payloads"))
def test_config_payloads(sqlite_repo, tenant_id, item, merge):
    sqlite_repo.update_config(tenant_id, {"top_k": 4})  # an existing tenant to protect

    def write():
        return sqlite_repo.update_config(tenant_id, parse_json_object(raw_input(item)),
                                         merge=merge)

    if item["expect"] == "reject":
        assert_rejected_and_nothing_changed(sqlite_repo, tenant_id, write)
        assert sqlite_repo.get_config(tenant_id).top_k == 4
    else:
        written = write()
        assert written.version == 2
        assert written.config.top_k == (4 if merge else 5)


def declared_variables(template: str) -> dict[str, str]:
    names = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)) - {"query", "context"}
    return {name: "Acme" for name in sorted(names)}


@pytest.mark.parametrize("item", items("templates"))
def test_templates(sqlite_repo, tenant_id, item):
    template = raw_input(item)
    updates = {"prompt_template": template, "prompt_variables": declared_variables(template)}
    if item["expect"] == "reject":
        err = assert_rejected_and_nothing_changed(
            sqlite_repo, tenant_id, lambda: sqlite_repo.update_config(tenant_id, updates))
        assert {e.field.split(".")[0] for e in err.errors} <= {"prompt_template", "prompt_variables"}
    else:
        stored = sqlite_repo.update_config(tenant_id, updates).config
        assert stored.prompt_template == template
        assert "What is BM25?" in assert_renders_safely(stored)


@pytest.mark.parametrize("item", items("prompt_variables"))
def test_prompt_variables(sqlite_repo, tenant_id, item):
    variables = item["input"]
    names = [k for k in variables if re.fullmatch(r"[A-Za-z_]\w*", k)]
    template = "Company: " + " ".join(f"{{{k}}}" for k in names) + " Question: {query}"
    updates = {"prompt_template": template, "prompt_variables": variables}
    if item["expect"] == "reject":
        err = assert_rejected_and_nothing_changed(
            sqlite_repo, tenant_id, lambda: sqlite_repo.update_config(tenant_id, updates))
        assert any(e.field.startswith("prompt_") for e in err.errors)
    else:
        stored = sqlite_repo.update_config(tenant_id, updates).config
        text = assert_renders_safely(stored, query="Q?")
        for value in variables.values():  # data, never re-expanded: "$query" stays "$query"
            assert value in text
        assert text.count("Q?") == 1
