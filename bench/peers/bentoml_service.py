"""BentoML 1.4 serving the benchmark's model: POST /classify with a raw image body, adaptive batching on.

    cd bench/peers && KENNEL_PEER_MODEL_DIR=... ../../.kennel/peer-bentoml/bin/bentoml serve \
        bentoml_service:ImageClassifier --host 127.0.0.1 --port 8002

Knobs (environment, read at import; bench/peers/host.py sets them): KENNEL_PEER_WORKERS (worker processes,
each with its model copy and its own batching), KENNEL_PEER_ORT_THREADS, KENNEL_PEER_MAX_BATCH_SIZE,
KENNEL_PEER_MAX_LATENCY_MS (BentoML answers 503 to what cannot be served within it). The API's one argument
is a list of images, BentoML's batch axis; `RawImage` reads a raw image body as a list of one (BentoML's own
input parsing knows JSON and multipart forms). The batched method decodes and preprocesses the batch's images
one after another in its thread, then runs the model once.
"""

import os

import bentoml
import numpy as np
from starlette.requests import Request

from bench.peers.model import PeerClassifier


class RawImage(bentoml.IODescriptor):
    images: list[bytes]

    @classmethod
    async def from_http_request(cls, request: Request, serde: object) -> "RawImage":
        return cls(images=[await request.body()])


@bentoml.service(
    workers=int(os.environ.get("KENNEL_PEER_WORKERS", "1")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class ImageClassifier:
    def __init__(self) -> None:
        self.classifier = PeerClassifier()

    @bentoml.api(
        batchable=True,
        input_spec=RawImage,
        max_batch_size=int(os.environ.get("KENNEL_PEER_MAX_BATCH_SIZE", "8")),
        max_latency_ms=int(os.environ.get("KENNEL_PEER_MAX_LATENCY_MS", "10000")),
    )
    def classify(self, images: list[bytes]) -> list[dict]:
        return self.classifier.answer(np.stack([self.classifier.prepare(image) for image in images]))
