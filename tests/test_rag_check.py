"""The cross-tenant regression check: one broken tenant is reported, none is hidden."""

from rag_support import (
    FIXED_NOW,
    DictConfigSource,
    catalog,
    fixture_eval,
    fixture_index,
    make_config,
    no_providers,
    stale_config,
)

from m11_tenant.errors import ConfigNotFoundError
from m11_tenant.rag.check import check_tenants
from m11_tenant.rag.pipeline import RagPipeline


def make_pipeline():
    return RagPipeline(None, None, index=fixture_index(), clock=lambda: FIXED_NOW,
                       catalog=catalog(), settings=no_providers())


QUESTIONS = [q.question for q in fixture_eval()[:2]]


def test_all_good_tenants_pass():
    source = DictConfigSource({"acme": make_config(), "globex": make_config(top_k=2)})
    report = check_tenants(source, make_pipeline(), QUESTIONS)
    assert report.ok and report.failing == []
    assert [t.questions_run for t in report.tenants] == [2, 2]
    assert report.text().startswith("checked 2 tenant(s) on 2 question(s): all ok")


def test_broken_tenants_are_each_reported_with_the_reason():
    source = DictConfigSource({
        "good": make_config(),
        "over-cap": stale_config(max_tokens=2000, plan="free"),
        "wrong-model": stale_config(model="gpt-4", plan="starter"),
        "bad-template": stale_config(prompt_template="{context}\n{query}\n{company}"),
        "gone": ConfigNotFoundError("no config stored for 'gone'"),
    })
    report = check_tenants(source, make_pipeline(), QUESTIONS)
    assert not report.ok
    assert report.failing == ["bad-template", "gone", "over-cap", "wrong-model"]
    by_id = {t.tenant_id: t for t in report.tenants}
    assert "cap of 1000" in by_id["over-cap"].problems[0]
    assert "'gpt-4' is not allowed on the starter plan" in by_id["wrong-model"].problems[0]
    assert "config does not load" in by_id["gone"].problems[0]
    # Re-validation (with the injection guard) reports the template once, before any question.
    assert by_id["bad-template"].questions_run == 0
    assert "unknown placeholder {company}" in by_id["bad-template"].problems[0]
    assert "FAIL wrong-model" in report.text()


def test_tenant_listing_shapes_are_accepted():
    class Lister(DictConfigSource):
        def list_tenants(self):
            return {"tenants": [{"tenant_id": "b"}, {"tenant_id": "a"}], "count": 2}

    report = check_tenants(Lister({"a": make_config(), "b": make_config()}), make_pipeline(),
                           QUESTIONS[:1])
    assert [t.tenant_id for t in report.tenants] == ["a", "b"]


def test_every_page_of_tenants_is_checked():
    class Paged(DictConfigSource):
        def iter_tenants(self):  # the repository's pager (tested in test_repository.py)
            for start in range(0, len(self.configs), 7):
                yield from sorted(self.configs)[start:start + 7]

    source = Paged({f"t{i:04d}": make_config() for i in range(1003)})
    from m11_tenant.rag.check import _all_tenants

    assert _all_tenants(source) == sorted(source.configs)


def test_every_seeded_example_tenant_passes_with_the_real_repository(sqlite_repo):
    from m11_tenant.seed import seed_tenants

    seeded = seed_tenants(sqlite_repo)
    report = check_tenants(sqlite_repo, make_pipeline(), QUESTIONS)
    assert [t.tenant_id for t in report.tenants] == sorted(seeded)
    assert report.ok, report.text()


def test_the_sample_covers_every_kind_and_is_stable():
    from m11_tenant.rag.check import sample_questions
    from m11_tenant.rag.corpus import load_eval

    sample = sample_questions(6)
    assert sample == sample_questions(6) and len(set(sample)) == 6
    kinds = {q.question: q.kind for q in load_eval()}
    assert {kinds[q] for q in sample} == set(kinds.values())


def test_check_all_tenants_runs_offline_on_the_sample(sqlite_repo):
    from m11_tenant.rag.check import check_all_tenants
    from m11_tenant.seed import seed_tenants

    seed_tenants(sqlite_repo)
    p = RagPipeline(index=fixture_index(), catalog=catalog(), generation="offline")
    report = check_all_tenants(sqlite_repo, pipeline=p)
    assert report.ok and len(report.questions) == 4
