"""The console's pure parts: the sign-in nonce, form parsing, readable colours."""

from __future__ import annotations

import pytest

from m11_tenant import colors
from m11_tenant.console import forms, views
from m11_tenant.console.session import login_nonce_ok
from m11_tenant.errors import FieldError
from m11_tenant.schema import TenantConfig


# ---- sign-in form (sessions themselves: tests/test_console_sessions.py) -------------------
def test_login_nonce_needs_both_halves_equal():
    assert login_nonce_ok("abc", "abc")
    assert not login_nonce_ok("abc", "abd")
    assert not login_nonce_ok(None, "abc")
    assert not login_nonce_ok("", "")


# ---- the form ------------------------------------------------------------------------------
def test_the_form_takes_its_bounds_from_the_schema():
    specs = forms.SPECS
    assert (specs["temperature"].kind, specs["temperature"].minimum,
            specs["temperature"].maximum) == ("float", 0.0, 2.0)
    assert (specs["top_k"].kind, specs["top_k"].maximum) == ("int", 20)
    assert specs["rerank_top_n"].optional and specs["fallback_model"].optional
    assert specs["prompt_variables"].kind == "variables"
    assert specs["prompt_template"].max_length == 2000
    assert specs["branding.primary_color"].kind == "color"
    assert set(specs) == {*TenantConfig.model_fields, "branding.primary_color",
                          "branding.secondary_color", "branding.logo_url"} - {"branding"}


def test_posted_strings_become_json_types_and_unreadable_ones_stay_as_typed():
    form = forms.parse_config_form(forms.checked_pairs([
        ("temperature", "0.25"), ("top_k", "7"), ("max_tokens", "5.5"), ("alpha", "abc"),
        ("rerank_top_n", ""), ("fallback_model", ""), ("enable_reranking", "false"),
        ("enable_reranking", "true"), ("prompt_template", "A\r\n{context}\r\n{query}"),
        ("branding.primary_color", " #FF6B35 "), ("branding.logo_url", ""),
        ("csrf", "ignored"), ("alpha", "nan")]))
    assert form.updates == {
        "temperature": 0.25, "top_k": 7, "max_tokens": "5.5", "alpha": "nan",
        "rerank_top_n": None, "fallback_model": None, "enable_reranking": True,
        "prompt_template": "A\n{context}\n{query}",
        "branding": {"primary_color": "#FF6B35", "logo_url": None}}
    assert form.values["max_tokens"] == "5.5" and form.values["alpha"] == "nan"
    assert form.errors == []


def test_a_field_not_posted_is_left_alone():
    form = forms.parse_config_form([("temperature", "1")])
    assert form.updates == {"temperature": 1.0}


def test_prompt_variable_rows():
    form = forms.parse_config_form(forms.checked_pairs([
        ("var_name", "company"), ("var_value", "Acme"), ("var_name", ""), ("var_value", ""),
        ("var_name", "tone"), ("var_value", "dry\r\nand short")]))
    assert form.updates["prompt_variables"] == {"company": "Acme", "tone": "dry\nand short"}
    assert forms.variable_rows(form.values) == [["company", "Acme"], ["tone", "dry\nand short"],
                                                ["", ""], ["", ""]]
    bad = forms.parse_config_form([("var_name", "a"), ("var_value", "1"), ("var_name", " a"),
                                   ("var_value", "2"), ("var_name", ""), ("var_value", "lost")])
    assert [e.type for e in bad.errors] == ["duplicate", "missing"]
    assert all(e.field == "prompt_variables" for e in bad.errors)


def test_values_of_a_config_round_trip_through_the_form():
    config = TenantConfig(temperature=0.3, prompt_variables={"company": "Acme"},
                          prompt_template="{company}\n{context}\n{query}").model_dump()
    values = forms.values_of(config)
    pairs = [(name, value) for name, value in values.items()
             if name != "prompt_variables" and not isinstance(value, bool)]
    pairs += [("enable_reranking", "true" if values["enable_reranking"] else "false")]
    pairs += [("var_name", "company"), ("var_value", "Acme")]
    form = forms.parse_config_form(pairs)
    assert TenantConfig(**{**form.updates,
                           "branding": {**config["branding"], **form.updates["branding"]}}
                        ).model_dump() == config


def test_rebase_keeps_the_users_changes_and_takes_the_rest_from_the_newer_version():
    base = TenantConfig(top_k=5, alpha=0.5).model_dump()
    latest = TenantConfig(top_k=5, alpha=0.9, temperature=0.1).model_dump()
    typed = {**forms.values_of(base), "top_k": "9"}
    values, changed = forms.rebase(typed, base, latest)
    assert changed == ["top_k"]
    assert (values["top_k"], values["alpha"], values["temperature"]) == ("9", "0.9", "0.1")
    # An invalid value typed by the user is carried over as typed.
    values, changed = forms.rebase({**typed, "alpha": "lots"}, base, latest)
    assert values["alpha"] == "lots" and changed == ["top_k", "alpha"]  # schema order


def test_errors_are_placed_next_to_their_input():
    placed = forms.errors_by_field([
        FieldError("max_tokens", "too many"), FieldError("prompt_variables.tone", "no"),
        FieldError("branding.primary_color", "hex"), FieldError("reason", "why?"),
        FieldError("body", "elsewhere")])
    assert placed == {"max_tokens": ["too many"], "prompt_variables": ["no"],
                      "branding.primary_color": ["hex"], "reason": ["why?"],
                      "": ["elsewhere"]}


# ---- colours and values -------------------------------------------------------------------
def test_text_on_a_brand_colour_stays_readable():
    assert colors.contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert views.readable_text("#FFF4EC") == "#111111"
    assert views.readable_text("#1B1F24") == "#FFFFFF"
    assert views.readable_text("#FF6B35") == "#111111"  # orange: black reads better


def test_the_notebooks_cards_use_the_same_formula_with_pure_black():
    assert colors.readable_text("#FF6B35") == "#000000"
    assert colors.readable_text("#1B1F24") == "#FFFFFF"
    # black wins exactly where its contrast does: at luminance ~0.179 the two are equal
    assert colors.relative_luminance("#757575") < 0.179 < colors.relative_luminance("#767676")
    assert colors.readable_text("#757575") == "#FFFFFF"
    assert colors.readable_text("#767676") == "#000000"


def test_values_are_shown_for_people():
    assert views.shown(None) == "null (not set)"
    assert views.shown(True) == "true"
    assert views.shown({}) == "{} (none)"
    assert views.diff_rows({"top_k": 5, "branding": {"primary_color": "#000000"}},
                           {"top_k": 8, "branding": {"primary_color": "#000000"}}) == [
        ("top_k", "5", "8")]
