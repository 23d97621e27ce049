"""The API's request parser: DRF's JSONParser, with a body nested too deeply answered as a 400
(`malformed_request`) instead of a RecursionError and a 500."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# No request body of this API nests more than three levels; 64 leaves room for any client.
MAX_DEPTH = 64

NESTED_TOO_DEEPLY = "JSON parse error - the body is nested too deeply."


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and objects more than `limit` levels deep (iterative, so that
    the check itself cannot exhaust the recursion limit)."""
    stack = [(value, 1)]
    children: Iterable[Any]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    """JSON bodies, at most MAX_DEPTH levels deep. Python's json module recurses once per
    nesting level, and how deep it gets before a RecursionError depends on the interpreter
    (3.11 stops near 1,000 levels, 3.13 parses 5,000 and stops near 10,000): the bound is
    checked here, so that every supported Python answers the same body the same way."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(NESTED_TOO_DEEPLY)
        if depth_exceeds(data, MAX_DEPTH):
            raise ParseError(NESTED_TOO_DEEPLY)
        return data
