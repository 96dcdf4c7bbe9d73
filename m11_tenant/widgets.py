"""ipywidgets for the notebooks: a live config editor and a tenant-branded answer card.

Widgets are built here, not in notebook cells, so their callbacks have names, docstrings
and tests. Each widget also has a plain-Python face (attributes to set, a ``summary()`` to
print), so a notebook can drive it in code and nbval can compare what it prints: widget
views themselves are not compared.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import ipywidgets as widgets

from m11_tenant.colors import readable_text
from m11_tenant.errors import ConfigValidationError, FieldError, QueryRefusedError
from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
from m11_tenant.schema import (
    DATA_DIR,
    Branding,
    TenantConfig,
    apply_update,
    load_catalog,
    parse_json_object,
    validate_config,
)

__all__ = ["ConfigEditor", "RetrievalExplorer", "answer_card", "answer_card_html",
           "result_card"]

_WIDE = widgets.Layout(width="480px")
_STYLE = {"description_width": "130px"}


def _json_text(value: Mapping[str, str]) -> str:
    import json

    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True)


class ConfigEditor(widgets.VBox):
    """Edit a tenant config with sliders and fields; validation errors update on every change.

    The sliders deliberately reach past the valid ranges (temperature up to 3.0, top_k
    down to 0) so a learner can *see* a bound being crossed. Nothing is stored until
    :meth:`save`; ``config`` is the validated config, or ``None`` while ``errors`` is
    non-empty.

    Drive it in code exactly as a learner would with the mouse::

        editor = ConfigEditor(repo.get_config("startup-co"), tenant_id="startup-co")
        editor.temperature.value = 2.5
        print(editor.summary())
    """

    def __init__(self, config: TenantConfig | Mapping[str, Any] | None = None, *,
                 tenant_id: str = "new-tenant"):
        start = validate_config(config) if config is not None else TenantConfig()
        catalog = load_catalog()
        models = list(catalog.models)
        self.tenant_id = tenant_id
        self.start = start  # what the editor has no control for is kept from here
        self.errors: list[FieldError] = []
        self.config: TenantConfig | None = start

        def slider(cls: type, name: str, lo: float, hi: float, step: float) -> Any:
            return cls(value=getattr(start, name), min=lo, max=hi, step=step,
                       description=name, style=_STYLE, layout=_WIDE, continuous_update=False)

        self.plan = widgets.Dropdown(options=list(catalog.plans), value=start.plan,
                                     description="plan", style=_STYLE, layout=_WIDE)
        self.model = widgets.Dropdown(options=models, value=start.model, description="model",
                                      style=_STYLE, layout=_WIDE)
        self.fallback_model = widgets.Dropdown(
            # "" stands for no fallback: ipywidgets shows a blank for a None value.
            options=[("(none)", ""), *[(m, m) for m in models]],
            value=start.fallback_model or "",
            description="fallback_model", style=_STYLE, layout=_WIDE)
        self.temperature = slider(widgets.FloatSlider, "temperature", 0.0, 3.0, 0.1)
        self.max_tokens = slider(widgets.IntSlider, "max_tokens", 0, 6000, 50)
        self.max_retries = slider(widgets.IntSlider, "max_retries", 0, 15, 1)
        self.top_k = slider(widgets.IntSlider, "top_k", 0, 25, 1)
        self.alpha = slider(widgets.FloatSlider, "alpha", 0.0, 1.0, 0.05)
        self.enable_reranking = widgets.Checkbox(value=start.enable_reranking,
                                                 description="enable_reranking", style=_STYLE)
        self.rerank_top_n = widgets.IntSlider(
            value=start.rerank_top_n or 0, min=0, max=25, description="rerank_top_n",
            style=_STYLE, layout=_WIDE, continuous_update=False)
        self.primary_color = widgets.Text(value=start.branding.primary_color,
                                          description="primary_color", style=_STYLE)
        self.secondary_color = widgets.Text(value=start.branding.secondary_color,
                                            description="secondary_color", style=_STYLE)
        self.prompt_variables = widgets.Textarea(
            value=_json_text(start.prompt_variables), description="prompt_variables",
            style=_STYLE, layout=widgets.Layout(width="640px", height="50px"))
        self.prompt_template = widgets.Textarea(
            value=start.prompt_template, description="prompt_template", style=_STYLE,
            layout=widgets.Layout(width="640px", height="120px"))
        self.status = widgets.HTML()
        self.inputs = [self.plan, self.model, self.fallback_model, self.temperature,
                       self.max_tokens, self.max_retries, self.top_k, self.alpha,
                       self.enable_reranking, self.rerank_top_n, self.primary_color,
                       self.secondary_color, self.prompt_variables, self.prompt_template]
        super().__init__(children=[*self.inputs, self.status])
        for control in self.inputs:
            control.observe(self._on_change, names="value")
        self.revalidate()

    def candidate(self) -> dict[str, Any]:
        """The config the controls describe now, as the mapping an API client would send.

        Fields without a control (the logo, query-log size, cost alerts) keep the values
        the editor started from, so saving a replacement never drops them."""
        variables, _error = self._variables()
        kept = self.start.model_dump(mode="json")
        return {
            **kept,
            "plan": self.plan.value, "model": self.model.value,
            "fallback_model": self.fallback_model.value or None,
            "temperature": round(self.temperature.value, 4),
            "max_tokens": self.max_tokens.value, "max_retries": self.max_retries.value,
            "top_k": self.top_k.value, "alpha": round(self.alpha.value, 4),
            "enable_reranking": self.enable_reranking.value,
            "rerank_top_n": self.rerank_top_n.value or None,
            "prompt_variables": variables, "prompt_template": self.prompt_template.value,
            "branding": {**kept["branding"], "primary_color": self.primary_color.value,
                         "secondary_color": self.secondary_color.value},
        }

    def _variables(self) -> tuple[Any, FieldError | None]:
        """The prompt_variables box parsed as a strict JSON object, or the raw text and why."""
        try:
            return parse_json_object(self.prompt_variables.value or "{}"), None
        except ConfigValidationError as exc:
            return self.prompt_variables.value, FieldError(
                "prompt_variables", exc.errors[0].message, exc.errors[0].type)

    def _on_change(self, _change: dict[str, Any]) -> None:
        """Any control moved: validate the whole candidate again and redraw the status."""
        self.revalidate()

    def revalidate(self) -> list[FieldError]:
        """Validate the candidate; update ``config``, ``errors`` and the status line."""
        try:
            self.config, self.errors = validate_config(self.candidate()), []
        except ConfigValidationError as exc:
            _variables, json_error = self._variables()
            self.config, self.errors = None, [
                json_error if json_error and e.field == "prompt_variables" else e
                for e in exc.errors]
        self.status.value = self._status_html()
        return self.errors

    def summary(self) -> str:
        """What the status line says, as plain text (what notebooks print and nbval compares)."""
        if not self.errors:
            return f"{self.tenant_id}: valid"
        lines = [f"{self.tenant_id}: {len(self.errors)} error(s)"]
        lines += [f"  - {e.field}: {e.message}" for e in self.errors]
        return "\n".join(lines)

    def _status_html(self) -> str:
        if not self.errors:
            return '<b style="color:#1a7f37">✓ valid</b>'
        items = "".join(f"<li><code>{html.escape(e.field)}</code>: {html.escape(e.message)}</li>"
                        for e in self.errors)
        return f'<b style="color:#cf222e">✗ {len(self.errors)} error(s)</b><ul>{items}</ul>'

    def save(self, repo: TenantConfigRepository, **change: Any) -> ResolvedConfig:
        """Store the edited config as a replacement (``merge=False``): what you see is saved.

        Raises:
            ConfigValidationError: the editor still shows errors; nothing was stored.
        """
        if self.config is None:
            raise ConfigValidationError(self.errors, "the editor shows errors; nothing was stored")
        return repo.update_config(self.tenant_id, self.config, merge=False, **change)

    def __repr__(self) -> str:
        state = "valid" if not self.errors else f"{len(self.errors)} error(s)"
        return f"ConfigEditor(tenant_id={self.tenant_id!r}, {state})"


# --------------------------------------------------------------------------- retrieval


class RetrievalExplorer(widgets.VBox):
    """Re-run one question through the pipeline as top_k, alpha, reranking and model change.

    The controls override a base config (a tenant's); each change validates the result and
    runs :meth:`RagPipeline.run` (a preview: nothing recorded), so a learner sees which
    sources come and go, and what the answer would cost. Retrieval knobs change the
    sources; the model changes only the price (and, live, the wording).
    """

    def __init__(self, pipeline: Any, question: str, config: TenantConfig | None = None, *,
                 tenant_id: str = "preview"):
        self.pipeline, self.tenant_id = pipeline, tenant_id
        self.base = config or TenantConfig()
        self.result: Any = None
        self.errors: list[FieldError] = []
        base = self.base

        def slider(cls: type, name: str, value: Any, lo: float, hi: float, step: float) -> Any:
            return cls(value=value, min=lo, max=hi, step=step, description=name, style=_STYLE,
                       layout=_WIDE, continuous_update=False)

        self.question = widgets.Text(value=question, description="question", style=_STYLE,
                                     layout=widgets.Layout(width="640px"),
                                     continuous_update=False)
        self.top_k = slider(widgets.IntSlider, "top_k", base.top_k, 1, 20, 1)
        self.alpha = slider(widgets.FloatSlider, "alpha", base.alpha, 0.0, 1.0, 0.05)
        self.enable_reranking = widgets.Checkbox(value=base.enable_reranking,
                                                 description="enable_reranking", style=_STYLE)
        self.rerank_top_n = slider(widgets.IntSlider, "rerank_top_n", base.rerank_top_n or 0,
                                   0, 20, 1)
        self.model = widgets.Dropdown(options=list(load_catalog().models), value=base.model,
                                      description="model", style=_STYLE, layout=_WIDE)
        self.output = widgets.HTML()
        self.inputs = [self.question, self.top_k, self.alpha, self.enable_reranking,
                       self.rerank_top_n, self.model]
        super().__init__(children=[*self.inputs, self.output])
        for control in self.inputs:
            control.observe(self._on_change, names="value")
        self.rerun()

    def overrides(self) -> dict[str, Any]:
        """The fields the controls set on top of the base config."""
        return {"top_k": self.top_k.value, "alpha": round(self.alpha.value, 4),
                "enable_reranking": self.enable_reranking.value,
                "rerank_top_n": self.rerank_top_n.value or None, "model": self.model.value}

    def _on_change(self, _change: dict[str, Any]) -> None:
        """Any control moved: validate the overrides and run the question again."""
        self.rerun()

    def rerun(self) -> Any:
        """Validate, run the pipeline, redraw; returns the result (``None`` on errors)."""
        self.result, self.errors = None, []
        try:
            config = apply_update(self.base, self.overrides(), merge=True)
            self.result = self.pipeline.run(config, self.question.value,
                                            tenant_id=self.tenant_id)
        except ConfigValidationError as exc:
            self.errors = exc.errors
        except QueryRefusedError as exc:
            self.errors = [FieldError("model", str(exc), "plan")]
        self.output.value = self._html()
        return self.result

    def summary(self) -> str:
        """Settings, then one line per source: rank, id, score, title; then tokens and cost."""
        o = self.overrides()
        head = (f"top_k={o['top_k']} alpha={o['alpha']} reranking={o['enable_reranking']} "
                f"rerank_top_n={o['rerank_top_n']} model={o['model']}")
        if self.result is None:
            return "\n".join([head, *(f"  ✗ {e.field}: {e.message}" for e in self.errors)])
        lines = [head]
        lines += [f"  [{s.n}] {s.id}  {s.score:.3f}  {s.title}" for s in self.result.sources]
        lines.append(f"  {self.result.usage.total_tokens} tokens, "
                     f"${self.result.cost_usd:.6f} on {self.result.model_used}")
        return "\n".join(lines)

    def _html(self) -> str:
        if self.result is None:
            items = "".join(f"<li>{html.escape(e.field)}: {html.escape(e.message)}</li>"
                            for e in self.errors)
            return f'<b style="color:#cf222e">✗ not run</b><ul>{items}</ul>'
        rows = "".join(
            f"<tr><td>[{s.n}]</td><td><code>{html.escape(s.id)}</code></td>"
            f"<td>{s.score:.3f}</td><td>{html.escape(s.title)}</td></tr>"
            for s in self.result.sources)
        return (f"<table>{rows}</table><p>{self.result.usage.total_tokens} tokens, "
                f"${self.result.cost_usd:.6f} on {html.escape(self.result.model_used)}</p>")

    def __repr__(self) -> str:
        state = ("not run" if self.result is None
                 else f"{len(self.result.sources)} source(s)")
        return f"RetrievalExplorer(tenant_id={self.tenant_id!r}, {state})"


# --------------------------------------------------------------------------- answer card


def logo_src(url: str) -> str:
    """Where a card loads a tenant's logo from: the local copy in ``data/logos/<host><path>``
    as a ``data:`` URI when there is one (the example tenants' logos, so the workbook shows
    them offline), else the tenant's own https URL."""
    parts = urlsplit(url)
    local = (DATA_DIR / "logos" / parts.hostname / parts.path.lstrip("/")).resolve()
    if (parts.hostname and not parts.query and local.suffix == ".svg"
            and local.is_relative_to((DATA_DIR / "logos").resolve()) and local.is_file()):
        return "data:image/svg+xml;base64," + base64.b64encode(local.read_bytes()).decode()
    return url


def answer_card_html(*, tenant_id: str, answer: str, branding: Branding,
                     sources: Sequence[Mapping[str, Any]] = (), model: str | None = None) -> str:
    """An answer styled with the tenant's branding, as a self-contained HTML fragment.

    Colours come from a validated :class:`Branding` (always ``#RRGGBB``) and every piece
    of text is escaped, so neither a tenant nor a retrieved passage can inject markup.
    """
    primary, secondary = branding.primary_color, branding.secondary_color
    logo = (f'<img src="{html.escape(logo_src(branding.logo_url))}" alt="" '
            'style="height:22px;vertical-align:middle;margin-right:8px">'
            if branding.logo_url else "")
    footer = f" · {html.escape(model)}" if model else ""
    items = "".join(
        f'<li><code>{html.escape(str(s.get("id", "")))}</code> '
        f'{html.escape(str(s.get("title", "")))}'
        + (f' <span style="opacity:.6">({float(s["score"]):.3f})</span>'
           if s.get("score") is not None else "")
        + "</li>"
        for s in sources
    )
    sources_html = (f'<div style="font-size:12px;margin-top:8px"><b>Sources</b>'
                    f'<ol style="margin:4px 0 0 18px;padding:0">{items}</ol></div>'
                    if items else "")
    return (
        f'<div style="font-family:system-ui,sans-serif;max-width:640px;border:2px solid '
        f'{primary};border-radius:8px;overflow:hidden">'
        f'<div style="background:{primary};color:{readable_text(primary)};padding:8px 12px;'
        f'font-weight:600">{logo}{html.escape(tenant_id)}{footer}</div>'
        f'<div style="background:{secondary};color:{readable_text(secondary)};padding:12px">'
        f'<div style="white-space:pre-wrap">{html.escape(answer)}</div>{sources_html}</div>'
        "</div>"
    )


def answer_card(**kwargs: Any) -> Any:
    """:func:`answer_card_html` wrapped for display in a notebook."""
    from IPython.display import HTML

    return HTML(answer_card_html(**kwargs))


def result_card(result: Any, branding: Branding) -> Any:
    """A pipeline result (``QueryResult``) as the tenant's branded answer card."""
    return answer_card(tenant_id=result.tenant_id, answer=result.answer, branding=branding,
                       sources=[s.model_dump() for s in result.sources],
                       model=result.model_used)
