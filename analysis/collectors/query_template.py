"""``{target}``/``{label}`` placeholders in metric queries, filled from the target.

One spec should work against every target it is pointed at, so a PromQL query names the
target symbolically: ``sum(rate(http_requests_total{job="{target}",env="{env}"}[1m]))``.
``{target}`` is the target's name; any other ``{name}`` is the target's label ``name``.

PromQL uses braces itself (label matchers), so ``str.format`` cannot be used. A
placeholder is *only* a brace pair around a bare identifier (``{env}``); a matcher always
contains an operator and a value (``{env="x"}``), an empty selector is ``{}``, so the
two cannot be confused. Substituted values are escaped for a double-quoted PromQL string
(``\\`` and ``"``), because that is where placeholders belong, and an unescaped quote in a
label value would otherwise change the query's meaning instead of failing loudly.

Kept free of heavy imports: the spec validator imports it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["UnknownPlaceholderError", "placeholders", "query_context", "render_query"]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnknownPlaceholderError(ValueError):
    """The template names placeholders the target does not provide."""

    def __init__(self, unknown: list[str], known: list[str]):
        self.unknown = unknown
        self.known = known
        shown = ", ".join("{" + k + "}" for k in known) or "none"
        super().__init__(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"the target provides: {shown}"
        )


def placeholders(template: str) -> list[str]:
    """Placeholder names in order of first appearance, each once."""
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def query_context(target: str | None, labels: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The values placeholders may use: the target's labels plus ``target`` (its name).

    The name wins over a label called ``target``: ``{target}`` must mean the same thing
    in every spec. Label values that are not strings (the labels field is free JSON) are
    converted with ``str`` so that ``{replicas}`` works for a number.
    """
    ctx = {str(k): str(v) for k, v in (labels or {}).items() if PLACEHOLDER.fullmatch(f"{{{k}}}")}
    if target is not None:
        ctx["target"] = str(target)
    return ctx


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_query(template: str, context: Mapping[str, str]) -> str:
    """Substitute every placeholder, or raise :class:`UnknownPlaceholderError` listing all
    missing ones at once (so the user fixes the spec in one round)."""
    unknown = [name for name in placeholders(template) if name not in context]
    if unknown:
        raise UnknownPlaceholderError(unknown, sorted(context))
    return PLACEHOLDER.sub(lambda m: _escape(str(context[m.group(1)])), template)
