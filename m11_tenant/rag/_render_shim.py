"""TEMPORARY stand-in for m11_tenant.templates.render_template until that module lands."""

from __future__ import annotations

import re
from collections.abc import Mapping

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_template(template: str, *, query: str, context: str,
                    variables: Mapping[str, str]) -> str:
    values = {**variables, "query": query, "context": context}

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok in ("{{", "}}"):
            return tok[0]
        return values[m.group(1)]

    return _FIELD.sub(sub, template)
