"""From a parsed request to the image to send: its bytes, content type and requested top-k, or a 4xx
ProxyError. JSON bodies are read by `strict_json` against `JSON_LIMITS` (lambda/README.md has the table)."""

import base64
import binascii
from typing import Any

from kennel_common.strict_json import JsonLimits, JsonRefused
from kennel_common.strict_json import loads as strict_json_loads

from .errors import ProxyError
from .events import ProxyRequest
from .safe_fetch import FetchError, UrlFetcher

IMAGE_TYPES_WITHOUT_PREFIX = frozenset({"application/x-image"})
JSON_FIELDS = frozenset({"image", "url", "top_k"})
MAX_TOP_K = 1000
# The one table of limits on a JSON body (and on a direct invocation's event), checked before parsing: a
# request needs depth 1 and 3 values. The body as a whole is bounded by KENNEL_MAX_IMAGE_BYTES.
JSON_LIMITS = JsonLimits(
    max_depth=8,  # nested arrays and objects
    max_values=1000,  # values in the document, keys not counted
    max_number_chars=40,  # digits, sign, point and exponent of one number
    max_key_chars=256,  # one object key
)


def read_image(request: ProxyRequest, max_bytes: int, fetcher: UrlFetcher) -> tuple[bytes, str, int | None]:
    """The image bytes, their content type and the requested top-k, or a 4xx ProxyError."""
    top_k = _top_k(request.query.get("top_k"))
    if request.content_type.startswith("image/") or request.content_type in IMAGE_TYPES_WITHOUT_PREFIX:
        return _body_bytes(request, max_bytes), request.content_type, top_k
    if request.content_type != "application/json":
        raise ProxyError(
            415,
            "unsupported_media_type",
            "send an image (image/jpeg, image/png, application/x-image) or application/json",
        )
    document = strict_json(_body_bytes(request, max_bytes))
    if not isinstance(document, dict):
        raise ProxyError(
            400, "invalid_json", 'the JSON body must be an object: {"image": ...} or {"url": ...}'
        )
    unknown = sorted(set(document) - JSON_FIELDS)
    if unknown:
        raise ProxyError(400, "invalid_json", f"unknown fields: {', '.join(unknown)[:200]}")
    if top_k is None:
        top_k = _top_k(document.get("top_k"))
    if ("image" in document) == ("url" in document):
        raise ProxyError(400, "invalid_json", 'give exactly one of "image" (base64) and "url"')
    if "image" in document:
        return _decode_base64(document["image"], max_bytes), "application/x-image", top_k
    if not isinstance(document["url"], str):
        raise ProxyError(400, "invalid_json", '"url" must be a string')
    try:
        fetched = fetcher.fetch(document["url"])
    except FetchError as err:
        raise ProxyError(err.status, err.type, str(err)) from err
    return fetched.body, fetched.content_type, top_k


def _body_bytes(request: ProxyRequest, limit: int) -> bytes:
    if not request.body:
        raise ProxyError(400, "empty_body", "the request has no body")
    if request.body_is_base64:
        return _decode_base64(request.body, limit)
    try:
        body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
    except UnicodeEncodeError as err:  # a lone surrogate, which an event's JSON can carry as \ud800
        raise ProxyError(400, "invalid_body", "the body is not Unicode text; send it base64-encoded") from err
    if len(body) > limit:
        raise ProxyError(413, "image_too_large", f"the body is larger than {limit} bytes")
    return body


def _decode_base64(value: Any, limit: int) -> bytes:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value:
        raise ProxyError(400, "invalid_base64", "the image must be a non-empty base64 string")
    if len(value) // 4 * 3 > limit + 2:
        raise ProxyError(413, "image_too_large", f"the image is larger than {limit} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ProxyError(400, "invalid_base64", "the image is not valid base64") from err
    if not data:
        raise ProxyError(400, "empty_body", "the image is empty")
    if len(data) > limit:
        raise ProxyError(413, "image_too_large", f"the image is larger than {limit} bytes")
    return data


def strict_json(data: bytes) -> Any:
    """The document in `data`, or a 400 ProxyError that names the rule it broke (kennel_common.strict_json:
    UTF-8 only, no NaN or Infinity, no duplicate keys, no lone surrogates, within JSON_LIMITS)."""
    try:
        return strict_json_loads(data, JSON_LIMITS)
    except JsonRefused as err:
        raise ProxyError(400, "invalid_json", str(err)) from None


def _top_k(value: Any) -> int | None:
    """top_k from the query string (text) or the JSON body (a number or text). Text must be ASCII digits:
    str.isdigit alone also passes digits that int() cannot read ("²") or reads from other scripts ("٣")."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            value = int(value)
        except ValueError:  # more digits than int() converts (4300)
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise ProxyError(400, "invalid_top_k", f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return value
