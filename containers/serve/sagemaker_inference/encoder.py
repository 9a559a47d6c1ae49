"""`encode(array_like, content_type)`: NumPy arrays and lists to JSON, CSV or NPY, as the toolkit does."""

import io
import json

import numpy as np

from sagemaker_inference import content_types, errors


def _array_to_json(array_like: object) -> str:
    def default(value: object) -> object:
        if hasattr(value, "tolist"):
            return value.tolist()
        return json.JSONEncoder().default(value)

    return json.dumps(array_like, default=default)


def _array_to_npy(array_like: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_like)
    return buffer.getvalue()


def _array_to_csv(array_like: object) -> str:
    stream = io.StringIO()
    np.savetxt(stream, array_like, delimiter=",", fmt="%s")
    return stream.getvalue()


_encoder_map = {
    content_types.NPY: _array_to_npy,
    content_types.CSV: _array_to_csv,
    content_types.JSON: _array_to_json,
}

SUPPORTED_CONTENT_TYPES = set(_encoder_map)


def encode(array_like: object, content_type: str) -> str | bytes:
    try:
        encoder = _encoder_map[content_type]
    except KeyError:
        raise errors.UnsupportedFormatError(content_type) from None
    return encoder(array_like)
