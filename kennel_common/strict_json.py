"""The one JSON reader for request data, used by the serving image and the Lambda proxy: standard JSON only,
refused on hostile structure before the parser allocates anything for it, in time linear in the body.

    from kennel_common.strict_json import JsonLimits, JsonRefused, loads
    loads(b'{"instances": [{"b64": "..."}]}')                  # -> dict, or raises JsonRefused
    loads(body, JsonLimits(max_depth=8, max_values=1000))      # the Lambda's tighter table

Order of work, every step linear and run in C:
1. UTF-8 decoding.
2. The strings are emptied (`"..."` becomes `""`), so that what is left, the skeleton, is structure, numbers
   and literals. `_STRING` matches a string from its opening quote to its closing quote, or to the end of the
   body when it is never closed: every attempt that starts at a quote succeeds, and its quantifiers are
   possessive, so the engine never gives a character back and never tries a second start inside a string it
   has read. Each character is read once. (The pattern this replaced could not match an unterminated string,
   so the engine tried again from every later quote: quadratic.) At most `2 * max_values + 1` strings are
   emptied: a document within the limits has at most that many (a string is a value or an object's key, and
   an object has no more keys than values), so the next one refuses the body without reading on.
3. Counts on the skeleton (`str.count`, `str.translate`, substring search): values, brackets, the longest
   number, and the depth of the at most `2 * max_values` brackets left.
4. Only then `json.loads`, with hooks that refuse duplicate keys and NaN/Infinity; a walk of the (now bounded)
   result refuses long keys and lone surrogates.

This file is the only copy: the serving image installs it from the repository root, and the Lambda's zip and
local image take it from here (deploy/function.py, lambda/Dockerfile).
"""

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int = 16  # nested arrays and objects; a serving request needs 3
    max_values: int = 10_000  # values in one document (or one JSON Lines line), keys not counted
    max_number_chars: int = 40  # digits, sign, point and exponent of one number
    max_key_chars: int = 256  # one object key; strings that are values are bounded by the body limit
    max_records: int = 1000  # images in one serving request: "instances" items, or JSON Lines lines


LIMITS = JsonLimits()


class JsonRefused(ValueError):
    """The body is not standard JSON, or is structured beyond `JsonLimits`; the message says which."""


# A string from its opening quote: runs of plain characters and whole escapes, taken possessively, then the
# closing quote, or the end of the body (after a lone backslash, if that is the last character). The group
# stops only before a quote or before a backslash with nothing after it, so the last part always matches.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_NUMBER_CHAR = "n"
# Outside strings, every character that can belong to a number becomes `n`; a run of n's is one number.
_NUMBERS = str.maketrans(dict.fromkeys("-+0123456789.eE", _NUMBER_CHAR))
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
    _check_skeleton(text, limits)
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as err:
        raise JsonRefused(f"not valid JSON: {err}") from None
    _check_strings(document, limits)
    return document


def _check_skeleton(text: str, limits: JsonLimits) -> None:
    """The limits, read from the document with every string emptied: what is left is structure and numbers."""
    most_strings = 2 * limits.max_values + 1
    skeleton, strings = _STRING.subn('""', text, count=most_strings + 1)
    if strings > most_strings:
        raise JsonRefused(f"the JSON holds more than {limits.max_values} values")
    values = skeleton.count(",") + skeleton.count("[") + skeleton.count("{") + 1
    if values > limits.max_values:
        raise JsonRefused(f"the JSON holds about {values} values; at most {limits.max_values} are read")
    closing = skeleton.count("]") + skeleton.count("}")
    if closing > limits.max_values:
        raise JsonRefused(f"the JSON has {closing} closing brackets; the limit is {limits.max_values}")
    if _NUMBER_CHAR * (limits.max_number_chars + 1) in skeleton.translate(_NUMBERS):
        raise JsonRefused(f"a number is longer than {limits.max_number_chars} characters")
    brackets = _NOT_BRACKET.sub("", skeleton)  # at most 2 * max_values characters, after the counts above
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
