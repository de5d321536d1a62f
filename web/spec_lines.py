"""Where in a YAML text a spec field lives, so validation errors can be shown at the line
of the offending field rather than as a detached list.

The validator reports dotted paths (``fault.params.latency_ms``, ``metrics.0.better``);
``yaml.compose`` gives every node its position, so the path is walked through the node
tree. A field that is missing points at its nearest existing parent; YAML syntax errors
carry their own line in the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

__all__ = ["AnnotatedLine", "annotate", "line_of"]

#: Lines shown above an error line, so the field is seen in its context.
CONTEXT_LINES = 2
_TOKEN = re.compile(r"[^.\[\]]+")
_SYNTAX_LINE = re.compile(r"at line (\d+)")


def _tokens(path: str) -> list[str]:
    return _TOKEN.findall(path or "")


def line_of(text: str, path: str, reason: str = "") -> int | None:
    """1-based line of the field at ``path`` in ``text`` (None when it cannot be placed)."""
    if not path:
        found = _SYNTAX_LINE.search(reason)
        return int(found.group(1)) if found else None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line
    for token in _tokens(path):
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if str(kv[0].value) == token), None)
            if match is None:
                break
            line = match[0].start_mark.line  # the key's line reads best
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and token.isdigit():
            index = int(token)
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line
        else:
            break
    return line + 1


@dataclass
class AnnotatedLine:
    number: int
    text: str
    errors: list[str]
    shown: bool = False  # an error line or the context just above one
    gap_before: bool = False  # lines were skipped between the previous shown line and this


def annotate(text: str, errors: list[tuple[str, str]]) -> tuple[list[AnnotatedLine], list[str]]:
    """The text's lines with each error attached to its field's line, plus the errors
    that could not be placed (shown above the text)."""
    lines = [AnnotatedLine(i + 1, t, []) for i, t in enumerate(text.splitlines())]
    unplaced: list[str] = []
    for path, reason in errors:
        message = f"{path}: {reason}" if path else reason
        number = line_of(text, path, reason)
        if number is not None and 1 <= number <= len(lines):
            lines[number - 1].errors.append(message)
        else:
            unplaced.append(message)
    for i, line in enumerate(lines):
        if line.errors:
            for ctx in lines[max(0, i - CONTEXT_LINES) : i + 1]:
                ctx.shown = True
    previous = 0
    for line in lines:
        if line.shown:
            line.gap_before = line.number > previous + 1 and previous > 0
            previous = line.number
    return lines, unplaced
