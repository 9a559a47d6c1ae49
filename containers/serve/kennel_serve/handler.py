"""Custom handlers: `MODEL_DIR/code/inference.py` (SAGEMAKER_PROGRAM) in the SageMaker inference toolkit's
convention replaces the built-in classifier, so existing scripts run unchanged:

    model_fn(model_dir) -> model
    input_fn(request_body, content_type) -> data
    predict_fn(data, model) -> prediction
    output_fn(prediction, accept) -> body, or (body, content_type)
    transform_fn(model, request_body, content_type, accept)   # instead of the three above

Each may take a trailing `context` argument (dispatched on the number of parameters, as the toolkit does).
A JSON or CSV body reaches a script's input_fn or transform_fn as text (a 400 if it is not UTF-8), any other
as bytes, as with the toolkit.
A function the script leaves out falls back to Kennel's: model_fn loads the Kennel model, input_fn decodes the
images in the body, predict_fn returns their class probabilities, output_fn encodes as JSON, CSV or NPY (a
PyTorch tensor first as SageMaker's PyTorch serving does: detached, on the CPU, as nested lists).
Requests run on a thread pool without micro-batching: a script's predict_fn sees one request at a time.
"""

import asyncio
import importlib.util
import inspect
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sagemaker_inference import content_types, encoder, errors

from kennel_serve.codecs import InferenceError, accept_ranges, decode, media_type, open_images
from kennel_serve.model import ImageClassifier, ModelLoadError
from kennel_serve.runtime import Invocation
from kennel_serve.settings import Settings

log = logging.getLogger(__name__)


def handler_path(settings: Settings) -> Path:
    return settings.model_dir / "code" / settings.program


@dataclass(frozen=True)
class HandlerContext:
    """The `context` argument: what the toolkit's context offers that a script can use here."""

    model_dir: str
    request_id: str = ""
    custom_attributes: str | None = None
    system_properties: dict = field(default_factory=dict)


def _call(function: Callable, *args: object, context: HandlerContext) -> object:
    takes_context = len(inspect.signature(function).parameters) == len(args) + 1
    return function(*args, context) if takes_context else function(*args)


class CustomHandlerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=settings.threads_per_worker, thread_name_prefix="handler")
        module = self._import(handler_path(settings))
        transform_fn = getattr(module, "transform_fn", None)
        overridden = [name for name in ("input_fn", "predict_fn", "output_fn") if hasattr(module, name)]
        if transform_fn is not None and overridden:
            raise ModelLoadError(f"{handler_path(settings)} defines transform_fn and {', '.join(overridden)}")
        self._transform_fn = transform_fn
        self._input_fn = getattr(module, "input_fn", self._decode_images)
        self._script_reads_body = transform_fn is not None or hasattr(module, "input_fn")
        self._predict_fn = getattr(module, "predict_fn", _default_predict_fn)
        self._output_fn = getattr(module, "output_fn", _default_output_fn)
        context = HandlerContext(
            str(settings.model_dir), system_properties={"model_dir": str(settings.model_dir)}
        )
        started = time.monotonic()
        model_fn = getattr(module, "model_fn", None)
        try:
            if model_fn is None:
                self.model = ImageClassifier(
                    settings.model_dir, settings.threads_per_worker, settings.precision
                )
            else:
                self.model = _call(model_fn, str(settings.model_dir), context=context)
        except ModelLoadError:
            raise
        except Exception as err:
            log.exception("model_fn failed")
            raise ModelLoadError(f"model_fn in {handler_path(settings)} failed: {err!r}") from None
        self.load_seconds = time.monotonic() - started
        self.classifier = self.model if isinstance(self.model, ImageClassifier) else None

    @staticmethod
    def _import(path: Path) -> object:
        # The script's own folder goes on sys.path, as the toolkit does, so it can import its sibling modules.
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            log.exception("importing the custom handler failed")
            raise ModelLoadError(f"cannot import the custom handler {path}: {err!r}") from None
        return module

    def start(self) -> None:
        """Nothing to start: requests run on the thread pool."""

    def _handle(self, invocation: Invocation, accept: str) -> tuple[bytes, str]:
        context = HandlerContext(
            str(self.settings.model_dir),
            invocation.request_id,
            invocation.custom_attributes,
            {"model_dir": str(self.settings.model_dir)},
        )
        content_type = media_type(invocation.content_type)
        body = _as_text(invocation.body, content_type) if self._script_reads_body else invocation.body
        if self._transform_fn is not None:
            result = _call(self._transform_fn, self.model, body, content_type, accept, context=context)
        else:
            data = _call(self._input_fn, body, content_type, context=context)
            prediction = _call(self._predict_fn, data, self.model, context=context)
            result = _call(self._output_fn, prediction, accept, context=context)
        body, response_type = result if isinstance(result, tuple) else (result, accept)
        return (body.encode() if isinstance(body, str) else bytes(body)), response_type

    async def invoke(self, invocation: Invocation) -> tuple[bytes, str]:
        # The handler gets one type: the concrete one the client likes best; as in the toolkit, an absent or
        # wildcard Accept means SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT.
        concrete = [(q, kind) for kind, q in accept_ranges(invocation.accept) if "*" not in kind and q > 0]
        accept = max(concrete, key=lambda pair: pair[0])[1] if concrete else self.settings.default_accept
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._handle, invocation, accept)
        except InferenceError:
            raise
        except errors.UnsupportedFormatError as err:
            raise InferenceError(415, "unsupported_media_type", str(err).splitlines()[0]) from None
        except errors.BaseInferenceToolkitError as err:
            status = err.status_code if 400 <= err.status_code <= 599 else 500
            raise InferenceError(status, "handler_error", str(err.message)) from None

    def _decode_images(self, body: bytes, content_type: str) -> list[Image.Image]:
        images = open_images(
            content_type, body, self.settings.max_image_pixels, self.settings.max_request_pixels
        )
        return [decode(image) for image in images]

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


def _as_text(body: bytes, content_type: str) -> bytes | str:
    # As the toolkit's server does: a script's input_fn or transform_fn gets JSON and CSV bodies as text.
    if content_type not in content_types.UTF8_TYPES:
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        kind = "bad_json" if content_type == content_types.JSON else "bad_csv"
        raise InferenceError(400, kind, f"a {content_type} body must be UTF-8: {err}") from None


def _default_predict_fn(images: list[Image.Image], model: ImageClassifier) -> np.ndarray:
    return model.predict(np.stack([model.preprocess(image) for image in images]))


def _default_output_fn(prediction: object, accept: str) -> str | bytes:
    # The default of SageMaker's PyTorch serving toolkit, which the scripts that need it were written for;
    # torch is not imported for it (the default image has none): a tensor is whatever comes from torch.
    if type(prediction).__module__.startswith("torch") and hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy().tolist()
    return encoder.encode(prediction, accept)
