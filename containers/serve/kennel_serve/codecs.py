"""Request and response formats: a table from content type to decoder, one from Accept type to encoder, and
the one error type every failure is expressed in.

Request bodies (docs in the OpenAPI spec at /docs):
- image/jpeg, image/png, application/x-image: the raw bytes of one image (the format is sniffed).
- application/json: ``{"instances": [{"b64": "<base64 image>"}, ...]}``, one or many images.
- application/jsonlines: one ``{"b64": "<base64 image>"}`` object per line (batch transform, SplitType=Line).

Responses, in one of two shapes (the manifest's `default_response`, or the request's `output=` custom
attribute):
- top_k: application/json ``{"predictions": [[{"label", "index", "probability"}, ...top-k], ...]}``, one list
  per image in request order;
- scores: application/json ``[[score, ...], ...]``, the network's output row per image (the seed project's
  endpoint answered this way).
application/jsonlines has, per image and one per line, what a request with that image alone gets as JSON.
"""

import base64
import binascii
import contextlib
import io
import json
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from kennel_common import strict_json
from kennel_common.model_format import RESPONSE_SHAPES

JSON = "application/json"
JSONLINES = "application/jsonlines"
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
# The formats a client may send; anything else is refused before Pillow tries its many other plugins.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
RESPONSE_TYPES = (JSON, JSONLINES)
JSONLINES_ALIASES = {"application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES}


class InferenceError(Exception):
    """A failure with the HTTP status it maps to; the app turns it into the JSON error body."""

    def __init__(self, status: int, kind: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.details = details


def media_type(header: str | None) -> str:
    """`Image/JPEG; charset=x` -> `image/jpeg`: the type without parameters, lower case, aliases resolved."""
    bare = (header or "").split(";", 1)[0].strip().lower()
    return JSONLINES_ALIASES.get(bare, bare)


def accept_ranges(accept: str | None) -> list[tuple[str, float]]:
    """`text/csv;q=0.5, */*` -> [("text/csv", 0.5), ("*/*", 1.0)]: media ranges with their q-values."""
    ranges = []
    for part in (accept or "*/*").split(","):
        kind, *params = (piece.strip() for piece in part.split(";"))
        if not kind:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((JSONLINES_ALIASES.get(kind.lower(), kind.lower()), quality))
    return ranges


def negotiate(accept: str | None, preferred: str, supported: tuple[str, ...] = RESPONSE_TYPES) -> str:
    """The supported type the Accept header likes best (q-values, `type/*`, `*/*`); ties go to `preferred`."""
    ranges = accept_ranges(accept)
    candidates = sorted(supported, key=lambda kind: kind != preferred)
    best, best_quality = None, 0.0
    for candidate in candidates:
        quality = _quality(candidate, ranges)
        if quality > best_quality:
            best, best_quality = candidate, quality
    if best is None:
        raise InferenceError(
            406,
            "not_acceptable",
            f"cannot answer with any type in Accept: {accept}",
            supported=list(supported),
        )
    return best


def _quality(candidate: str, ranges: list[tuple[str, float]]) -> float:
    """The q of the most specific range that matches `candidate` (RFC 9110, section 12.5.1)."""
    major = candidate.split("/")[0]
    for pattern in (candidate, f"{major}/*", "*/*"):
        matches = [quality for kind, quality in ranges if kind == pattern]
        if matches:
            return max(matches)
    return 0.0


def custom_attribute(custom_attributes: str | None, name: str) -> str | None:
    """The first `name=value` in X-Amzn-SageMaker-Custom-Attributes (comma- or semicolon-separated
    key=value pairs, keys in any case), or None."""
    for item in (custom_attributes or "").replace(";", ",").split(","):
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return None


def parse_top_k(custom_attributes: str | None, default: int) -> int:
    """`top_k=N` from X-Amzn-SageMaker-Custom-Attributes."""
    value = custom_attribute(custom_attributes, "top_k")
    if value is None:
        return default
    # ASCII digits only: int() alone also reads "+3", "1_0" and digits of other scripts ("٣").
    top_k = 0
    if value.isascii() and value.isdigit():
        with contextlib.suppress(ValueError):  # more digits than int() converts (4300)
            top_k = int(value)
    if top_k < 1:
        raise InferenceError(
            400, "bad_custom_attributes", f"top_k must be a positive integer, not {value[:40]!r}"
        )
    return top_k


def parse_response_shape(custom_attributes: str | None, default: str) -> str:
    """`output=top_k` or `output=scores` from X-Amzn-SageMaker-Custom-Attributes. Without it, `top_k=N`
    asks for top_k (clients that only ever sent top_k keep their shape), else `default`: the manifest's."""
    value = custom_attribute(custom_attributes, "output")
    asks_top_k = custom_attribute(custom_attributes, "top_k") is not None
    if value is None:
        return "top_k" if asks_top_k else default
    shape = value.lower()
    if shape not in RESPONSE_SHAPES:
        raise InferenceError(
            400,
            "bad_custom_attributes",
            f"output must be {' or '.join(RESPONSE_SHAPES)}, not {value!r}",
            supported=list(RESPONSE_SHAPES),
        )
    if shape == "scores" and asks_top_k:
        raise InferenceError(
            400,
            "bad_custom_attributes",
            "top_k applies to output=top_k; send output=scores without top_k to get every class's score",
        )
    return shape


def _one_image(body: bytes) -> list[bytes]:
    if not body:
        raise InferenceError(400, "empty_body", "the request body is empty; send the bytes of an image")
    return [body]


def _b64(instance: object, where: str) -> bytes:
    if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
        raise InferenceError(400, "bad_json", f'{where} must be an object {{"b64": "<base64 image>"}}')
    try:
        return base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise InferenceError(400, "bad_base64", f"{where}.b64 is not valid base64: {err}") from None


def _json_instances(body: bytes) -> list[bytes]:
    try:
        document = strict_json.loads(body)
    except strict_json.JsonRefused as err:
        raise InferenceError(400, "bad_json", f"the body is refused: {err}") from None
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InferenceError(400, "bad_json", 'expected {"instances": [{"b64": "<base64 image>"}, ...]}')
    _check_records(len(instances))
    return [_b64(instance, f"instances[{i}]") for i, instance in enumerate(instances)]


def _check_records(count: int) -> None:
    if count > strict_json.LIMITS.max_records:
        raise InferenceError(
            400,
            "too_many_images",
            f"the request holds {count} images; send at most {strict_json.LIMITS.max_records} per request",
        )


def _json_lines(body: bytes) -> list[bytes]:
    lines = body.splitlines()
    _check_records(len(lines))
    images = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            instance = strict_json.loads(line)
        except strict_json.JsonRefused as err:
            raise InferenceError(400, "bad_json", f"line {number} is refused: {err}") from None
        images.append(_b64(instance, f"line {number}"))
    if not images:
        raise InferenceError(400, "empty_body", 'expected one {"b64": "<base64 image>"} object per line')
    return images


DECODERS: dict[str, Callable[[bytes], list[bytes]]] = {
    **dict.fromkeys(IMAGE_TYPES, _one_image),
    JSON: _json_instances,
    JSONLINES: _json_lines,
}


def split_images(content_type: str | None, body: bytes) -> list[bytes]:
    """The encoded images in a request body, by its Content-Type."""
    decoder = DECODERS.get(media_type(content_type))
    if decoder is None:
        raise InferenceError(
            415,
            "unsupported_media_type",
            f"cannot read Content-Type {content_type!r}",
            supported=list(DECODERS),
        )
    return decoder(body)


@contextlib.contextmanager
def _image_errors() -> Iterator[None]:
    """Pillow's failures on a bad image, as the 400 the client gets."""
    try:
        yield
    except UnidentifiedImageError:
        raise InferenceError(
            400, "bad_image", f"the body is not an image in {', '.join(IMAGE_FORMATS)}"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError) as err:
        raise InferenceError(400, "bad_image", f"cannot decode the image: {err}") from None


def read_header(data: bytes, max_pixels: int) -> Image.Image:
    """One image, opened but not decoded (Pillow reads the header only); refuses other formats, and sizes
    over `max_pixels`."""
    with _image_errors():
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    width, height = image.size
    if width * height > max_pixels:
        raise InferenceError(
            400, "image_too_large", f"the image is {width}x{height}; at most {max_pixels} pixels are decoded"
        )
    return image


def open_images(
    content_type: str | None, body: bytes, max_pixels: int, max_request_pixels: int
) -> list[Image.Image]:
    """Every image in a request body, opened but not decoded; a 413 as soon as their pixels add up to more
    than `max_request_pixels`, so that no pixel of an over-budget request is decoded."""
    opened, pixels = [], 0
    for data in split_images(content_type, body):
        image = read_header(data, max_pixels)
        pixels += image.width * image.height
        if pixels > max_request_pixels:
            raise InferenceError(
                413,
                "too_many_pixels",
                f"the request's images hold more than {max_request_pixels} pixels in all; send fewer or "
                "smaller images per request",
                limit_pixels=max_request_pixels,
                setting="KENNEL_MAX_REQUEST_PIXELS",
            )
        opened.append(image)
    return opened


def decode(
    image: Image.Image, least_size: Callable[[int, int], tuple[int, int]] | None = None
) -> Image.Image:
    """Decodes an image from `read_header`. With `least_size` ((width, height) -> the smallest (width,
    height) the caller needs), a JPEG decodes at the smallest of libjpeg's 1/2, 1/4 and 1/8 scales that is
    still at least that size; other formats decode at full size."""
    with _image_errors():
        if least_size is not None and image.format == "JPEG":
            # Scaled in the DCT domain: a 12 MP photo decodes at 1/4 scale in a fraction of the time and
            # memory, and Pillow's draft never goes below the size asked for.
            image.draft(None, least_size(*image.size))
        image.load()
    return image


def open_image(
    data: bytes, max_pixels: int, least_size: Callable[[int, int], tuple[int, int]] | None = None
) -> Image.Image:
    """Decodes one image: `read_header`, then `decode`."""
    return decode(read_header(data, max_pixels), least_size)


def top_predictions(probabilities: np.ndarray, labels: tuple[str, ...], top_k: int) -> list[list[dict]]:
    """Per image, the `top_k` classes by probability, most likely first."""
    top_k = min(top_k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    return [
        [{"label": labels[i], "index": int(i), "probability": float(row[i])} for i in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]


def _encode_json(predictions: list[list[dict]]) -> bytes:
    return json.dumps({"predictions": predictions}).encode()


def _encode_json_lines(predictions: list[list[dict]]) -> bytes:
    return "".join(json.dumps({"predictions": [one]}) + "\n" for one in predictions).encode()


ENCODERS: dict[str, Callable[[list[list[dict]]], bytes]] = {JSON: _encode_json, JSONLINES: _encode_json_lines}


def _encode_scores_json(scores: np.ndarray) -> bytes:
    return json.dumps(scores.tolist()).encode()


def _encode_scores_json_lines(scores: np.ndarray) -> bytes:
    return "".join(json.dumps([row]) + "\n" for row in scores.tolist()).encode()


SCORE_ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    JSON: _encode_scores_json,
    JSONLINES: _encode_scores_json_lines,
}
