"""The one JSON reader for request bodies: standard JSON only, refused on hostile structure before the parser
does work proportional to it.

    from kennel_serve.strict_json import LIMITS, loads
    loads(b'{"instances": [{"b64": "..."}]}', LIMITS)   # -> dict, or raises JsonRefused

A single linear pass that Python runs in C (UTF-8 decoding, one regular expression, counts) bounds the
document first: its size in values, the depth of its nesting and the length of its numbers. Only then does
`json.loads` run, with hooks that refuse duplicate keys and NaN/Infinity; a walk of the (now bounded)
result refuses long keys and lone surrogates. The limits are `LIMITS`, documented in the README.
"""

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int = 16  # nested arrays and objects; a request needs 3
    max_values: int = 10_000  # values in one document (or one JSON Lines line), keys not counted
    max_number_chars: int = 40  # digits, sign, point and exponent of one number
    max_key_chars: int = 256  # one object key; strings that are values are bounded by the body limit
    max_records: int = 1000  # images in one request: "instances" items, or JSON Lines lines


LIMITS = JsonLimits()


class JsonRefused(ValueError):
    """The body is not standard JSON, or is structured beyond `JsonLimits`; the message says which."""


# A JSON string, written so that the regular expression engine never backtracks: runs of plain
# characters, each escape taken whole.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def loads(data: bytes | str, limits: JsonLimits = LIMITS) -> Any:
    """The document in `data` (UTF-8), or JsonRefused with a message that names the limit it broke."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JsonRefused(f"the body is not UTF-8 (byte {err.start}): JSON must be UTF-8 text") from None
    else:
        text = data
    _check_skeleton(_STRING.sub('""', text), limits)
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as err:
        raise JsonRefused(f"not valid JSON: {err}") from None
    _check_strings(document, limits)
    return document


def _check_skeleton(skeleton: str, limits: JsonLimits) -> None:
    """Limits read from the document with every string emptied: what is left is structure and numbers."""
    values = skeleton.count(",") + skeleton.count("[") + skeleton.count("{") + 1
    if values > limits.max_values:
        raise JsonRefused(f"the JSON holds about {values} values; at most {limits.max_values} are read")
    if re.search(rf"[-+0-9.eE]{{{limits.max_number_chars + 1},}}", skeleton):
        raise JsonRefused(f"a number is longer than {limits.max_number_chars} characters")
    brackets = _NOT_BRACKET.sub("", skeleton)
    if len(brackets) > 2 * limits.max_values:
        raise JsonRefused(f"the JSON has {len(brackets)} brackets; the limit is {2 * limits.max_values}")
    depth = max(accumulate(_DEPTH_STEP[c] for c in brackets), default=0)
    if depth > limits.max_depth:
        raise JsonRefused(f"the JSON is nested {depth} deep; at most {limits.max_depth} levels are read")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise JsonRefused(f"the key {duplicate[:40]!r} appears twice in one object")
    return document


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _check_strings(document: Any, limits: JsonLimits) -> None:
    """Refuses long keys and strings that hold a lone surrogate (`\\ud800`), which no UTF-8 encodes."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if len(key) > limits.max_key_chars:
                    raise JsonRefused(f"a key is longer than {limits.max_key_chars} characters")
                _utf8(key)
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            _utf8(value)


def _utf8(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused("a string holds a lone surrogate (\\ud800-\\udfff): not Unicode text") from None
