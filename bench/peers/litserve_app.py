"""LitServe 0.2 serving the benchmark's model: POST /predict with a raw image body, adaptive batching on.

    KENNEL_PEER_MODEL_DIR=... KENNEL_PEER_PORT=8001 \
        .kennel/peer-litserve/bin/python -m bench.peers.litserve_app

Knobs (environment; bench/peers/host.py sets them): KENNEL_PEER_WORKERS (`workers_per_device`, processes
that each decode, batch and run the model), KENNEL_PEER_ORT_THREADS, KENNEL_PEER_MAX_BATCH_SIZE,
KENNEL_PEER_BATCH_TIMEOUT_MS, KENNEL_PEER_FAST_QUEUE (1: the ZeroMQ queue between the HTTP server and the
workers). LitServe reads the body in its HTTP server process and hands it to a worker process, which calls
`decode_request` per request, then `batch` and `predict` on what it has gathered: that is where decoding
runs, one image at a time in each worker.
"""

import os
from typing import Annotated

import litserve as ls
import numpy as np
from fastapi import Depends, Request

from bench.peers.model import PeerClassifier


async def raw_body(request: Request) -> bytes:
    return await request.body()


class ImageClassifierAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.classifier = PeerClassifier()

    # The raw body, read by a FastAPI dependency: LitServe would otherwise parse the body as JSON.
    def decode_request(self, request: Annotated[bytes, Depends(raw_body)]) -> np.ndarray:
        return self.classifier.prepare(request)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> list[dict]:
        return self.classifier.answer(x)

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


def main() -> None:
    api = ImageClassifierAPI(
        max_batch_size=int(os.environ.get("KENNEL_PEER_MAX_BATCH_SIZE", "8")),
        batch_timeout=float(os.environ.get("KENNEL_PEER_BATCH_TIMEOUT_MS", "0")) / 1000,
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=int(os.environ.get("KENNEL_PEER_WORKERS", "1")),
        fast_queue=os.environ.get("KENNEL_PEER_FAST_QUEUE", "1") == "1",
        timeout=60,
    )
    server.run(
        host="127.0.0.1",
        port=int(os.environ["KENNEL_PEER_PORT"]),
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
