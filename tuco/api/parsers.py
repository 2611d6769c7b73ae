"""The API's JSON body parser: DRF's, with a body nested too deeply for the decoder
refused as malformed (a 400 PARSE_ERROR) instead of crashing the request."""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_DEEP = "JSON parse error - nested too deeply"


def loads(raw: bytes | str):
    """JSON text as Python values; ValueError for malformed or too deeply nested JSON."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
