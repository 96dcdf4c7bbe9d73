"""Pure validation: every bound on both sides, tenant ids, strict JSON, merge vs replace."""

from __future__ import annotations

import json

import pytest

from m11_tenant.errors import ConfigValidationError, InvalidTenantIdError
from m11_tenant.schema import (
    DEFAULT_TEMPLATE,
    TenantConfig,
    apply_update,
    config_diff,
    load_catalog,
    parse_json_object,
    validate_config,
    validate_tenant_id,
)

PRO = {"plan": "pro"}  # a plan whose caps reach the schema's own bounds

# (field, lowest accepted, highest accepted, just below, just above)
BOUNDS = [
    ("temperature", 0.0, 2.0, -0.0001, 2.0001),
    ("max_tokens", 1, 4000, 0, 4001),
    ("max_retries", 0, 10, -1, 11),
    ("top_k", 1, 20, 0, 21),
    ("query_log_size", 0, 1000, -1, 1001),
    ("alpha", 0.0, 1.0, -0.01, 1.01),
]


@pytest.mark.parametrize(("field", "low", "high", "below", "above"), BOUNDS,
                         ids=[b[0] for b in BOUNDS])
def test_every_bound_accepts_its_edges_and_rejects_beyond(field, low, high, below, above):
    assert getattr(validate_config({**PRO, field: low}), field) == low
    assert getattr(validate_config({**PRO, field: high}), field) == high
    for bad in (below, above):
        with pytest.raises(ConfigValidationError) as err:
            validate_config({**PRO, field: bad})
        assert [e.field for e in err.value.errors] == [field]
        assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_rerank_top_n_bounds_and_relation_to_top_k():
    assert validate_config({"top_k": 20, "rerank_top_n": 20}).rerank_top_n == 20
    assert validate_config({"top_k": 5, "rerank_top_n": 1}).rerank_top_n == 1
    for bad in (0, 21):
        with pytest.raises(ConfigValidationError):
            validate_config({"top_k": 20, "rerank_top_n": bad})
    with pytest.raises(ConfigValidationError, match="rerank_top_n 6 must be <= top_k 5"):
        validate_config({"top_k": 5, "rerank_top_n": 6})


def test_unset_rerank_top_n_follows_top_k():
    config = validate_config({"top_k": 2, "enable_reranking": True})
    assert config.rerank_top_n is None
    assert config.effective_rerank_top_n == 2
    assert validate_config({"top_k": 9, "rerank_top_n": 4}).effective_rerank_top_n == 4


def test_defaults_are_valid_and_documented():
    config = TenantConfig()
    assert config.plan == "free" and config.model == "gpt-3.5-turbo"
    assert config.prompt_template == DEFAULT_TEMPLATE
    assert validate_config({}) == config


@pytest.mark.parametrize("payload", [
    {"temperature": "0.7"}, {"top_k": True}, {"top_k": 5.0}, {"max_tokens": "4000"},
    {"enable_reranking": 1}, {"alpha": None}, {"prompt_variables": {"a": 1}},
    {"prompt_variables": ["a"]},
], ids=lambda p: json.dumps(p))
def test_types_are_strict(payload):
    with pytest.raises(ConfigValidationError) as err:
        validate_config(payload)
    assert err.value.errors[0].field.split(".")[0] == next(iter(payload))


def test_integral_numbers_are_lossless_floats():
    assert validate_config({"temperature": 2}).temperature == 2.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_rejected(value):
    with pytest.raises(ConfigValidationError):
        validate_config({"temperature": value})


def test_unknown_field_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigValidationError) as err:
        validate_config({"temprature": 0.5})
    assert err.value.errors[0].field == "temprature"
    assert "did you mean 'temperature'?" in err.value.errors[0].message


def test_unknown_branding_field_is_rejected():
    with pytest.raises(ConfigValidationError, match="did you mean 'primary_color'"):
        validate_config({"branding": {"primary_colour": "#000000"}})


@pytest.mark.parametrize("model", ["GPT-4", "gpt-4 ", "gpt-5", "", "llama-3"])
def test_model_must_be_in_the_catalog_exactly(model):
    with pytest.raises(ConfigValidationError, match="not in the catalog"):
        validate_config({"plan": "enterprise", "model": model})


def test_catalog_is_data_driven():
    catalog = load_catalog()
    assert set(catalog.models) == {"gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "claude-3-opus",
                                   "claude-3-sonnet", "claude-3-haiku"}
    assert list(catalog.plans) == ["free", "starter", "pro", "enterprise"]
    assert catalog.model("gpt-4").output_usd_per_1k > catalog.model("gpt-3.5-turbo").output_usd_per_1k


@pytest.mark.parametrize("plan", ["free", "starter", "pro", "enterprise"])
def test_each_plan_allows_exactly_its_models(plan):
    allowed = set(load_catalog().plan(plan).allowed_models)
    for model in load_catalog().models:
        payload = {"plan": plan, "model": model}
        if model in allowed:
            assert validate_config(payload).model == model
        else:
            with pytest.raises(ConfigValidationError, match=f"not allowed on the {plan} plan"):
                validate_config(payload)


def test_plan_caps_max_tokens():
    cap = load_catalog().plan("free").max_tokens_cap
    assert validate_config({"plan": "free", "max_tokens": cap}).max_tokens == cap
    with pytest.raises(ConfigValidationError) as err:
        validate_config({"plan": "free", "max_tokens": cap + 1})
    assert err.value.errors[0].field == "max_tokens"
    assert "cap" in err.value.errors[0].message


def test_unknown_plan_is_rejected():
    with pytest.raises(ConfigValidationError, match="unknown plan 'platinum'"):
        validate_config({"plan": "platinum"})


def test_fallback_model_follows_the_same_rules():
    assert validate_config({"fallback_model": "claude-3-haiku"}).fallback_model == "claude-3-haiku"
    with pytest.raises(ConfigValidationError, match="fallback_model 'gpt-4' is not allowed"):
        validate_config({"fallback_model": "gpt-4"})
    with pytest.raises(ConfigValidationError, match="must differ from model"):
        validate_config({"fallback_model": "gpt-3.5-turbo"})
    with pytest.raises(ConfigValidationError, match="not in the catalog"):
        validate_config({"fallback_model": "gpt-9"})


@pytest.mark.parametrize("color", ["#FFF", "FF0000", "#GGGGGG", "#FF00001", "red", " #FF0000"])
def test_colours_must_be_rrggbb(color):
    with pytest.raises(ConfigValidationError, match="#RRGGBB"):
        validate_config({"branding": {"secondary_color": color}})


@pytest.mark.parametrize("url", ["http://x.example/logo.png", "javascript:alert(1)",
                                 "https://", "https://x.example/a b.png", "data:image/png,AAA"])
def test_logo_url_must_be_https(url):
    with pytest.raises(ConfigValidationError, match="https://"):
        validate_config({"branding": {"logo_url": url}})


def test_valid_branding():
    branding = validate_config({"branding": {"primary_color": "#a1B2c3",
                                             "logo_url": "https://cdn.example/l.svg"}}).branding
    assert branding.primary_color == "#a1B2c3" and branding.logo_url.endswith("l.svg")


def test_several_errors_are_reported_together():
    with pytest.raises(ConfigValidationError) as err:
        validate_config({"temperature": 5, "top_k": 0, "color": "x"})
    assert sorted(e.field for e in err.value.errors) == ["color", "temperature", "top_k"]
    assert isinstance(err.value, ValueError)


def test_configs_are_immutable():
    config = TenantConfig()
    with pytest.raises(Exception, match="frozen"):
        config.temperature = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- tenant ids

@pytest.mark.parametrize("tenant_id", ["abc", "acme-corp_01", "007", "a" * 64, "0-_"])
def test_valid_tenant_ids(tenant_id):
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize(("tenant_id", "hint"), [
    ("ab", "has 2 characters"), ("a" * 65, "has 65 characters"), ("-abc", "starts with '-'"),
    ("_abc", "starts with '_'"), ("ACME", "starts with 'A'"), ("acme\n", "contains '\\n'"),
    ("ac me", "contains ' '"), ("acme:admin", "contains ':'"), ("ａｃｍｅ", "starts with"),
    ("admin", "reserved"), ("default", "reserved"),
])
def test_invalid_tenant_ids_say_why(tenant_id, hint):
    with pytest.raises(InvalidTenantIdError) as err:
        validate_tenant_id(tenant_id)
    assert hint in str(err.value)
    assert err.value.errors[0].field == "tenant_id"


@pytest.mark.parametrize("tenant_id", [None, 7, b"acme", ["acme"]])
def test_tenant_id_must_be_a_string(tenant_id):
    with pytest.raises(InvalidTenantIdError, match="must be a string"):
        validate_tenant_id(tenant_id)


# ---------------------------------------------------------------- strict JSON

@pytest.mark.parametrize(("text", "hint"), [
    ('{"temperature": NaN}', "NaN"), ('{"temperature": Infinity}', "Infinity"),
    ('{"temperature": -Infinity}', "Infinity"), ('{"temperature": 1e999}', "out of range"),
    ('{"top_k": 1, "top_k": 2}', "duplicate key 'top_k'"), ('"gpt-4"', "got a string"),
    ("null", "got null"), ("42", "got a number"), ("[]", "got an array"), ("true", "a boolean"),
    ("{", "malformed JSON"), ("", "malformed JSON"), ('{"a": 1,}', "malformed JSON"),
])
def test_json_payloads_are_parsed_strictly(text, hint):
    with pytest.raises(ConfigValidationError, match=hint) as err:
        parse_json_object(text)
    assert err.value.errors[0].field == "body"


def test_json_size_and_depth_are_capped():
    with pytest.raises(ConfigValidationError, match="limit is 100"):
        parse_json_object('{"a": "' + "x" * 200 + '"}', max_bytes=100)
    with pytest.raises(ConfigValidationError, match="nests 9 levels"):
        parse_json_object('{"a":' * 9 + "1" + "}" * 9)
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigValidationError, match="levels deep"):
        parse_json_object(deep, max_bytes=1_000_000)


def test_braces_inside_strings_do_not_count_as_depth():
    assert parse_json_object('{"prompt_template": "{{{{{{{{{{{{ {query}"}')


def test_invalid_utf8_is_rejected():
    with pytest.raises(ConfigValidationError, match="UTF-8"):
        parse_json_object(b'{"a": "\xff"}')


# ---------------------------------------------------------------- merge vs replace

def test_merge_changes_only_the_given_fields():
    current = validate_config({"plan": "pro", "model": "gpt-4", "top_k": 9})
    merged = apply_update(current, {"temperature": 0.1}, merge=True)
    assert (merged.model, merged.top_k, merged.temperature) == ("gpt-4", 9, 0.1)


def test_replace_resets_everything_else_to_defaults():
    current = validate_config({"plan": "pro", "model": "gpt-4", "top_k": 9})
    replaced = apply_update(current, {"temperature": 0.1}, merge=False)
    assert replaced == TenantConfig(temperature=0.1)


def test_merge_goes_into_branding_but_replaces_prompt_variables_whole():
    current = validate_config({
        "branding": {"primary_color": "#000000", "secondary_color": "#111111"},
        "prompt_variables": {"a": "1", "b": "2"},
        "prompt_template": "{a} {b} {query}",
    })
    merged = apply_update(current, {"branding": {"primary_color": "#222222"}}, merge=True)
    assert merged.branding.secondary_color == "#111111"
    assert merged.branding.primary_color == "#222222"
    with pytest.raises(ConfigValidationError, match="b"):
        apply_update(current, {"prompt_variables": {"a": "x"}}, merge=True)


def test_empty_update_is_a_no_op_on_merge_and_defaults_on_replace():
    current = validate_config({"top_k": 3})
    assert apply_update(current, {}, merge=True) == current
    assert apply_update(current, {}, merge=False) == TenantConfig()


def test_update_must_be_a_mapping():
    with pytest.raises(ConfigValidationError, match="expected an object"):
        apply_update(TenantConfig(), ["top_k", 3], merge=True)  # type: ignore[arg-type]


def test_config_diff_lists_changed_fields_only():
    old = TenantConfig().model_dump()
    new = validate_config({"top_k": 3, "branding": {"primary_color": "#000000"}}).model_dump()
    assert config_diff(old, new) == {"top_k": [5, 3], "branding.primary_color": ["#1F6FEB", "#000000"]}
    assert config_diff(None, {"top_k": 3}) == {"top_k": [None, 3]}


def test_validation_checks_against_the_catalog_it_is_given():
    """Validation and a pipeline with its own catalog agree: pass the pipeline's catalog."""
    from m11_tenant.rag import RagPipeline
    from m11_tenant.rag.plans import catalog_from

    full = load_catalog()
    small = catalog_from(full)
    small = type(small)({k: v for k, v in full.models.items() if k != "gpt-4"}, full.plans)
    pipeline = RagPipeline(catalog=small, generation="offline")
    config = {"plan": "pro", "model": "gpt-4"}
    assert validate_config(config).model == "gpt-4"  # the loaded catalog has it
    with pytest.raises(ConfigValidationError, match="'gpt-4' is not in the catalog"):
        validate_config(config, catalog=pipeline.catalog)
    with pytest.raises(ConfigValidationError, match="'gpt-4' is not in the catalog"):
        validate_config(validate_config(config), catalog=small)  # a model is checked again
    with pytest.raises(ConfigValidationError, match="'gpt-4' is not in the catalog"):
        apply_update(TenantConfig(plan="pro"), {"model": "gpt-4"}, merge=True, catalog=small)


def test_the_store_records_need_no_pydantic():
    """``store/base.py`` records a diff with every audit entry; the diff is plain dicts, so
    importing the store's records loads neither pydantic nor the templates and guard."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, m11_tenant.store.base; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'pydantic_core', 'numpy') or m in ('m11_tenant.guard', "
            "'m11_tenant.templates', 'm11_tenant.model')))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(root)})
    assert out.stdout.strip() == "[]"
