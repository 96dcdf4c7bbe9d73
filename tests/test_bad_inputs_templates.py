"""The shared bad-input corpus, templates and prompt-variables sections, as data-driven tests.

``tests/data/bad_inputs.json`` is vendored unchanged from ``shared/samples``. Each item's
``expect`` is the behaviour we want: ``reject`` is a TemplateError (a ConfigValidationError)
with a message; ``accept_safely`` validates and renders without leaking an object repr.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from m11_tenant.errors import ConfigValidationError, TemplateError
from m11_tenant.templates import (
    parse_template,
    render_template,
    validate_prompt_variables,
    validate_template,
)

CORPUS = json.loads((Path(__file__).parent / "data" / "bad_inputs.json").read_text("utf-8"))

# What a str.format-style leak would put in a prompt.
LEAK = re.compile(r"__class__|__globals__|__subclasses__|<class '|<built-in|<function "
                  r"| object at 0x|<bound method")
QUERY = "How do refunds work? {0} {query.__class__} $context"
CONTEXT = "[1] Refunds take 5 days. {{context}} ${query}"


def corpus_input(item: dict[str, Any]) -> Any:
    """The item's input, built as its _meta documents (``generate``, ``input_kind``)."""
    if item.get("generate"):
        return "".join(part["text"] * part["times"] for part in item["generate"])
    if item.get("input_kind") == "raw_json_text":
        return json.loads(item["input"])
    return item["input"]


def params(section: str, expect: str) -> list[Any]:
    return [pytest.param(item, id=item["id"]) for item in CORPUS[section]
            if item["expect"] == expect]


def declared_for(template: str) -> set[str]:
    """The template's own placeholders other than query/context (so tpl-valid-control's
    {company_name} counts as declared); nothing if it does not even parse."""
    try:
        return set(parse_template(template).placeholders - {"query", "context"})
    except TemplateError:
        return set()


def test_corpus_sections_are_present() -> None:
    assert len(CORPUS["templates"]) >= 20 and len(CORPUS["prompt_variables"]) >= 5


@pytest.mark.parametrize("item", params("templates", "reject"))
def test_template_rejected(item: dict[str, Any]) -> None:
    template = corpus_input(item)
    with pytest.raises(TemplateError) as exc_info:
        validate_template(template, declared_for(template))
    assert isinstance(exc_info.value, ConfigValidationError)
    error = exc_info.value.errors[0]
    assert error.field == "prompt_template" and error.message.strip()


@pytest.mark.parametrize("item", params("templates", "reject"))
def test_injection_templates_are_refused_by_the_guard(item: dict[str, Any]) -> None:
    # A well-formed template with {query} must be refused for its content, so the guard
    # (not a syntax slip) is what catches it.
    template = corpus_input(item)
    try:
        parsed = parse_template(template)
    except TemplateError:
        return
    if "query" not in parsed.placeholders:
        return
    with pytest.raises(TemplateError) as exc_info:
        validate_template(template, declared_for(template))
    assert exc_info.value.errors[0].type in {"injection", "forbidden_character"}


@pytest.mark.parametrize("item", params("templates", "accept_safely"))
def test_template_accepted_and_rendered_safely(item: dict[str, Any]) -> None:
    template = corpus_input(item)
    declared = declared_for(template)
    parsed = validate_template(template, declared)
    variables = {name: f"<{name} value {{x}}>" for name in sorted(declared)}
    rendered = render_template(template, query=QUERY, context=CONTEXT, variables=variables)
    assert rendered == render_template(parsed, query=QUERY, context=CONTEXT,
                                       variables=variables)
    assert QUERY in rendered
    assert LEAK.search(rendered.replace(QUERY, "")) is None
    for value in variables.values():
        assert value in rendered


@pytest.mark.parametrize("item", params("prompt_variables", "reject"))
def test_prompt_variables_rejected(item: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as exc_info:
        validate_prompt_variables(corpus_input(item))
    assert isinstance(exc_info.value, ConfigValidationError)
    error = exc_info.value.errors[0]
    assert error.field.startswith("prompt_variables") and error.message.strip()


@pytest.mark.parametrize("item", params("prompt_variables", "accept_safely"))
def test_prompt_variables_accepted_and_rendered_as_data(item: dict[str, Any]) -> None:
    variables = validate_prompt_variables(corpus_input(item))
    template = "Q: {query}\n" + "\n".join("{" + name + "}" for name in variables)
    rendered = render_template(template, query="the question", context="the context",
                               variables=variables)
    expected = "Q: the question\n" + "\n".join(variables.values())
    assert rendered == expected  # "$query ${context}" stays text: one pass, no re-expansion
    assert LEAK.search(rendered) is None
