"""The API's request parser: DRF's JSONParser, with a body nested too deeply for the parser
answered as a 400 (`malformed_request`) instead of a RecursionError and a 500."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """JSON bodies. Python's json module recurses once per nesting level; a body of thousands of
    brackets exhausts the interpreter's recursion limit before it is rejected. No client needs
    more than a few levels, so any body that deep is malformed input."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.")
