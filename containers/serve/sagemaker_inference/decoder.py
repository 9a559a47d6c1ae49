"""`decode(obj, content_type)`: JSON, CSV and NPY request bodies to NumPy arrays, as the toolkit does."""

import io

import numpy as np

from kennel_common import strict_json
from sagemaker_inference import content_types, errors


def _json_to_numpy(string_like: str | bytes, dtype: object = None) -> np.ndarray:
    # Kennel's JSON reader: hostile structure is a 400 for the client, not a 500 as with json.loads.
    try:
        document = strict_json.loads(string_like)
    except strict_json.JsonRefused as err:
        raise errors.GenericInferenceToolkitError(400, f"the JSON body is refused: {err}") from None
    return np.array(document, dtype=dtype)


def _csv_to_numpy(string_like: str | bytes, dtype: object = None) -> np.ndarray:
    text = string_like.decode() if isinstance(string_like, bytes) else string_like
    return np.genfromtxt(io.StringIO(text), dtype=dtype, delimiter=",")


def _npy_to_numpy(npy_array: bytes) -> np.ndarray:
    return np.load(io.BytesIO(npy_array), allow_pickle=False)


_decoder_map = {
    content_types.NPY: _npy_to_numpy,
    content_types.CSV: _csv_to_numpy,
    content_types.JSON: _json_to_numpy,
}


def decode(obj: str | bytes, content_type: str) -> np.ndarray:
    try:
        decoder = _decoder_map[content_type]
    except KeyError:
        raise errors.UnsupportedFormatError(content_type) from None
    return decoder(obj)
