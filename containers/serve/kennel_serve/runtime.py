"""What answers /invocations once a model is loaded: the built-in classifier (micro-batched), or a custom
handler from the model directory (`handler.py`). Both take an `Invocation` and return body and media type."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from kennel_serve.batching import MicroBatcher
from kennel_serve.codecs import (
    ENCODERS,
    JSONLINES,
    SCORE_ENCODERS,
    decode,
    media_type,
    negotiate,
    open_images,
    parse_response_shape,
    parse_top_k,
    top_predictions,
)
from kennel_serve.metrics import ServingMetrics
from kennel_serve.model import ImageClassifier
from kennel_serve.settings import Settings


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    request_id: str


class Runtime(Protocol):
    load_seconds: float
    classifier: ImageClassifier | None  # the Kennel model, when this runtime serves one

    def start(self) -> None: ...

    async def invoke(self, invocation: Invocation) -> tuple[bytes, str]: ...

    async def close(self) -> None: ...


class ClassifierRuntime:
    """Decodes images on a thread pool while the micro-batcher's thread runs the model."""

    def __init__(self, classifier: ImageClassifier, settings: Settings, metrics: ServingMetrics) -> None:
        self.classifier = classifier
        self.settings = settings
        self._decoders = ThreadPoolExecutor(
            max_workers=settings.threads_per_worker, thread_name_prefix="decode"
        )
        self._metrics = metrics
        self.batcher = MicroBatcher(
            classifier.scores,
            settings.max_batch_size,
            settings.max_batch_delay_s,
            on_batch=self._on_batch,
            concurrency=settings.concurrent_batches,
        )
        self.load_seconds = classifier.load_seconds

    def start(self) -> None:
        self.batcher.start()

    def _on_batch(self, size: int) -> None:
        self._metrics.batch_size.observe(size)
        # Set here rather than read at scrape time: another worker may answer the scrape.
        self._metrics.queue_depth.set(self.batcher.queue_depth)

    def _open(self, content_type: str | None, body: bytes) -> list[Image.Image]:
        """The request's images, checked against both pixel limits before any is decoded."""
        return open_images(
            content_type, body, self.settings.max_image_pixels, self.settings.max_request_pixels
        )

    def _open_one(
        self, content_type: str | None, body: bytes
    ) -> list[Image.Image] | tuple[np.ndarray, np.ndarray | None]:
        """A request's images; when it holds one, that image preprocessed instead, with the model's scores
        if the model was idle (`MicroBatcher.run_now`): a lone request then needs no further hand-off."""
        images = self._open(content_type, body)
        if len(images) != 1:
            return images
        array = self._prepare(images[0])
        return array, self.batcher.run_now(array)

    def _prepare(self, image: Image.Image) -> np.ndarray:
        least_size = self.classifier.manifest.preprocessing.least_decode_size
        return self.classifier.preprocess(decode(image, least_size))

    async def invoke(self, invocation: Invocation) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        request_type = media_type(invocation.content_type)
        # JSON Lines in, JSON Lines out, unless the client asks for something else.
        preferred = JSONLINES if request_type == JSONLINES else self.settings.default_accept
        response_type = negotiate(invocation.accept, preferred)
        top_k = parse_top_k(invocation.custom_attributes, self.settings.top_k)
        shape = parse_response_shape(invocation.custom_attributes, self.classifier.manifest.default_response)
        images = await loop.run_in_executor(
            self._decoders, self._open_one, invocation.content_type, invocation.body
        )
        if isinstance(images, tuple):  # one image, decoded and preprocessed on the same hand-off
            array, scores = images
            scores = (await self.batcher.submit(array) if scores is None else scores)[np.newaxis]
        else:
            arrays = await asyncio.gather(
                *(loop.run_in_executor(self._decoders, self._prepare, image) for image in images)
            )
            scores = np.stack(await asyncio.gather(*(self.batcher.submit(array) for array in arrays)))
        if shape == "scores":
            return SCORE_ENCODERS[response_type](scores), response_type
        predictions = top_predictions(self.classifier.probabilities(scores), self.classifier.labels, top_k)
        return ENCODERS[response_type](predictions), response_type

    async def close(self) -> None:
        await self.batcher.stop()
        self._decoders.shutdown(wait=True)
