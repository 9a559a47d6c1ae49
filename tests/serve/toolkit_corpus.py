"""One corpus of payloads and content types for `sagemaker_inference`'s decoder, encoder, content types and
errors, run inside an image and printed as JSON: what each case returned or raised. The conformance test
(test_toolkit_conformance.py) runs it in the default serving image (Kennel's shim) and in the compatibility
build (the real toolkit), and compares the two.

    docker run --rm -v "$PWD/tests/serve/toolkit_corpus.py:/corpus.py:ro" IMAGE python /corpus.py

It needs only NumPy and the module under test, and builds every payload itself, so that both sides get the
same bytes. An outcome is plain JSON: the Python type that came back and its value (arrays as dtype, shape
and nested lists; bytes as hex), or the exception's class and message.
"""

import importlib.metadata
import io
import json
import sys
import warnings

import numpy as np

JSON, CSV, NPY, NPZ = "application/json", "text/csv", "application/x-npy", "application/x-npz"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def sparse_npz() -> bytes:
    """A 2x3 CSR matrix [[0, 5, 0], [7, 0, 0]] in scipy.sparse.save_npz's layout, written with NumPy."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array("csr"),
        shape=np.array([2, 3]),
        data=np.array([5.0, 7.0]),
        indices=np.array([1, 0], dtype=np.int32),
        indptr=np.array([0, 1, 2], dtype=np.int32),
    )
    return buffer.getvalue()


class NoList:
    """Something that neither JSON nor `tolist` can turn into a value."""


DECODE = {
    "json array": ("[[1, 2], [3, 4]]", JSON),
    "json array as bytes": (b"[[1.5, -2e3], [0, 1e-7]]", JSON),
    "json object": ('{"instances": [1, 2]}', JSON),
    "json string": ('"text"', JSON),
    "json empty array": ("[]", JSON),
    "json ragged": ("[[1, 2], [3]]", JSON),
    "json truncated": ('{"a": ', JSON),
    "json empty body": ("", JSON),
    "json NaN": ("[NaN, 1]", JSON),
    "json duplicate key": ('{"a": 1, "a": 2}', JSON),
    "json nested 20 deep": ("[" * 20 + "]" * 20, JSON),
    "json not utf-8": (b'["\xff"]', JSON),
    "csv rows": ("1,2\n3,4", CSV),
    "csv one row": ("1.5,2,3", CSV),
    "csv text cells": ("a,b\nc,d", CSV),
    "csv as bytes": (b"1,2\n3,4", CSV),
    "npy int": (npy(np.arange(6).reshape(2, 3)), NPY),
    "npy float32": (npy(np.array([[0.25, -1.0]], dtype=np.float32)), NPY),
    "npy pickled objects": (npy(np.array([{"a": 1}, None], dtype=object)), NPY),
    "npy not npy": (b"not an npy file", NPY),
    "npz sparse": (sparse_npz(), NPZ),
    "unsupported type": ("1", "text/plain"),
    "type in upper case": ("[1]", "Application/JSON"),
    "type with parameters": ("[1]", "application/json; charset=utf-8"),
}

ENCODE = {
    "json array": (np.arange(3), JSON),
    "json float32": (np.array([[0.5, -1.25]], dtype=np.float32), JSON),
    "json list of arrays": ([np.arange(2), np.ones(2)], JSON),
    "json dict with array": ({"scores": np.arange(2.0)}, JSON),
    "json numpy scalar": (np.float32(1.5), JSON),
    "json nan": ([float("nan")], JSON),
    "json not serialisable": (NoList(), JSON),
    "csv 2d": (np.array([[1, 2], [3, 4]]), CSV),
    "csv 1d floats": (np.array([0.5, 1.5]), CSV),
    "csv nested list": ([[1, "a"], [2, "b"]], CSV),
    "csv 0d": (np.float64(3.0), CSV),
    "npy int": (np.arange(4), NPY),
    "npy list": ([[1.0, 2.0]], NPY),
    "npy objects": (np.array([{"a": 1}], dtype=object), NPY),
    "npz": (np.arange(2), NPZ),
    "unsupported type": (np.arange(2), "application/jsonlines"),
    "wildcard": (np.arange(2), "*/*"),
}


def value(result: object) -> object:
    """A JSON description of a returned value."""
    if isinstance(result, np.ndarray):
        items = result.tolist() if result.dtype != object else repr(result.tolist())
        return {"type": "ndarray", "dtype": str(result.dtype), "shape": list(result.shape), "items": items}
    if isinstance(result, bytes):
        return {"type": "bytes", "hex": result.hex()}
    if isinstance(result, str):
        return {"type": "str", "text": result}
    if hasattr(result, "toarray"):  # a scipy.sparse matrix
        return {"type": type(result).__name__, "dense": result.toarray().tolist()}
    return {"type": type(result).__name__, "repr": repr(result)}


def outcome(function, *args: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # genfromtxt warns on odd input; the result is what counts
        try:
            return {"returned": value(function(*args))}
        except Exception as err:
            return {"raised": type(err).__name__, "message": str(err), "args": [repr(a) for a in err.args]}


def run() -> dict:
    from sagemaker_inference import content_types, decoder, encoder, errors

    base = errors.BaseInferenceToolkitError(503, "busy", "Service Unavailable")
    generic = [
        errors.GenericInferenceToolkitError(400),
        errors.GenericInferenceToolkitError(422, "nothing to predict"),
        errors.GenericInferenceToolkitError(500, "m", "p"),
    ]
    try:
        toolkit = importlib.metadata.version("sagemaker-inference")
    except importlib.metadata.PackageNotFoundError:
        toolkit = None  # Kennel's shim, part of the kennel-serve distribution
    return {
        "sagemaker-inference": toolkit,
        "content_types": {
            name: getattr(content_types, name)
            for name in ("JSON", "CSV", "OCTET_STREAM", "ANY", "NPY", "NPZ", "UTF8_TYPES")
        },
        "encoder.SUPPORTED_CONTENT_TYPES": sorted(encoder.SUPPORTED_CONTENT_TYPES),
        "errors": {
            "hierarchy": [
                issubclass(errors.GenericInferenceToolkitError, errors.BaseInferenceToolkitError),
                issubclass(errors.BaseInferenceToolkitError, Exception),
                issubclass(errors.UnsupportedFormatError, Exception),
            ],
            "unsupported": str(errors.UnsupportedFormatError("image/webp")),
            "base": [base.status_code, base.message, base.phrase, list(base.args)],
            "generic": [[e.status_code, e.message, e.phrase, list(e.args)] for e in generic],
        },
        "decode": {name: outcome(decoder.decode, *case) for name, case in DECODE.items()},
        "encode": {name: outcome(encoder.encode, *case) for name, case in ENCODE.items()},
    }


if __name__ == "__main__":
    json.dump(run(), sys.stdout)
