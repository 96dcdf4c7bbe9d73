"""The notebook widgets, driven in code exactly as the notebooks drive them."""

from __future__ import annotations

import pytest

from m11_tenant.errors import ConfigValidationError
from m11_tenant.schema import Branding, TenantConfig, validate_config
from m11_tenant.widgets import ConfigEditor, answer_card_html, logo_src


def test_editor_starts_valid_and_reports_each_bound_crossed():
    editor = ConfigEditor(tenant_id="acme")
    assert editor.summary() == "acme: valid"
    editor.temperature.value = 2.5
    editor.top_k.value = 0
    assert [e.field for e in editor.errors] == ["temperature", "top_k"]
    assert editor.config is None
    assert "2 error(s)" in editor.summary() and "2 error(s)" in repr(editor)
    assert "temperature" in editor.status.value  # the HTML status line follows the controls


def test_editor_reports_plan_rules_once_fields_are_valid_and_recovers():
    editor = ConfigEditor(tenant_id="acme")
    editor.model.value = "gpt-4"  # not on the free plan
    assert [e.field for e in editor.errors] == ["model"]
    editor.plan.value = "pro"
    assert editor.errors == [] and editor.config is not None
    assert editor.config.model == "gpt-4"


def test_editor_names_malformed_prompt_variables_json():
    editor = ConfigEditor(tenant_id="acme")
    editor.prompt_variables.value = '{"company": "Acme",}'
    assert len(editor.errors) == 1
    assert editor.errors[0].field == "prompt_variables"
    assert "malformed JSON" in editor.errors[0].message


def test_editor_status_escapes_markup_from_input():
    editor = ConfigEditor(tenant_id="acme")
    editor.primary_color.value = "<img src=x>"
    assert "<img" not in editor.status.value and "&lt;img" in editor.status.value


def test_editor_candidate_round_trips_a_stored_config():
    stored = validate_config({"plan": "pro", "model": "gpt-4", "top_k": 9, "rerank_top_n": 4,
                              "enable_reranking": True,
                              "prompt_variables": {"company": "Acme"},
                              "prompt_template": "For {company}: {context} {query}"})
    assert validate_config(ConfigEditor(stored).candidate()) == stored


def test_editor_keeps_the_fields_it_has_no_control_for(sqlite_repo, tenant_id):
    stored = validate_config({"branding": {"logo_url": "https://acme.example/logo.png"},
                              "plan": "pro", "query_log_size": 50,
                              "cost_alert_thresholds": [50, 90]})
    editor = ConfigEditor(stored, tenant_id=tenant_id)
    editor.top_k.value = 7
    saved = editor.save(sqlite_repo).config
    assert saved.branding.logo_url == "https://acme.example/logo.png"
    assert (saved.query_log_size, saved.cost_alert_thresholds, saved.top_k) == (50, [50, 90], 7)


def test_editor_saves_only_when_valid(sqlite_repo, tenant_id):
    editor = ConfigEditor(tenant_id=tenant_id)
    editor.max_tokens.value = 5000
    with pytest.raises(ConfigValidationError, match="nothing was stored"):
        editor.save(sqlite_repo)
    assert sqlite_repo.get_record(tenant_id).version == 0
    editor.max_tokens.value = 800
    assert editor.save(sqlite_repo, actor="test").config.max_tokens == 800


def test_answer_card_uses_branding_and_escapes_all_text():
    branding = Branding(primary_color="#000080", secondary_color="#FFFFFF",
                        logo_url="https://example.com/logo.png?a=1&b=2")
    html = answer_card_html(tenant_id="acme", answer="<script>x</script>", branding=branding,
                            sources=[{"id": "p1", "title": "A & B", "score": 0.51234}],
                            model="gpt-4")
    assert "background:#000080;color:#FFFFFF" in html  # white text on navy
    assert "background:#FFFFFF;color:#000000" in html  # black text on white
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "A &amp; B" in html and "(0.512)" in html
    assert 'src="https://example.com/logo.png?a=1&amp;b=2"' in html


def test_answer_card_without_sources_or_logo_has_neither():
    html = answer_card_html(tenant_id="acme", answer="hi", branding=Branding())
    assert "<img" not in html and "Sources" not in html


@pytest.fixture(scope="module")
def pipeline():
    from m11_tenant.workbook import open_sandbox

    box = open_sandbox()
    yield box.pipeline()
    box.close()


def test_explorer_reruns_retrieval_when_controls_change(pipeline):
    from m11_tenant.widgets import RetrievalExplorer

    explorer = RetrievalExplorer(pipeline, "How is tenant data kept apart?",
                                 validate_config({"plan": "pro", "top_k": 4}))
    assert len(explorer.result.sources) == 4 and "4 source(s)" in repr(explorer)
    explorer.alpha.value = 0.0
    keyword = [s.id for s in explorer.result.sources]
    explorer.alpha.value = 1.0
    assert [s.id for s in explorer.result.sources] != keyword
    explorer.enable_reranking.value = True
    explorer.rerank_top_n.value = 2
    assert len(explorer.result.sources) == 2
    cost = explorer.result.cost_usd
    explorer.model.value = "gpt-4"
    assert explorer.result.cost_usd > cost
    assert explorer.summary().splitlines()[-1].endswith("on gpt-4")


def test_explorer_shows_validation_and_plan_errors_instead_of_running(pipeline):
    from m11_tenant.widgets import RetrievalExplorer

    explorer = RetrievalExplorer(pipeline, "How is tenant data kept apart?")  # free plan
    explorer.model.value = "gpt-4"
    assert explorer.result is None and explorer.errors[0].field == "model"
    assert "not run" in explorer.output.value
    explorer.model.value = "gpt-3.5-turbo"
    explorer.top_k.value, explorer.rerank_top_n.value = 3, 5
    assert [e.field for e in explorer.errors] == ["rerank_top_n"]


def test_the_example_logo_is_inlined_so_cards_work_offline():
    branding = Branding(logo_url="https://enterprise-corp.example/logo.svg")
    html = answer_card_html(tenant_id="enterprise-corp", answer="hi", branding=branding)
    assert 'src="data:image/svg+xml;base64,' in html
    assert "enterprise-corp.example" not in html


def test_a_logo_without_a_local_copy_keeps_its_url_and_no_path_escapes_the_mirror():
    assert logo_src("https://elsewhere.example/logo.svg") == "https://elsewhere.example/logo.svg"
    sneaky = "https://enterprise-corp.example/../../tenants.json"
    assert logo_src(sneaky) == sneaky


def test_no_fallback_shows_as_none_and_means_none():
    editor = ConfigEditor(TenantConfig(), tenant_id="t-fallback")
    assert editor.fallback_model.label == "(none)"
    assert editor.candidate()["fallback_model"] is None
    editor.fallback_model.value = "gpt-3.5-turbo"
    assert editor.candidate()["fallback_model"] == "gpt-3.5-turbo"
