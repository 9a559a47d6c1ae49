"""The classifier both peers serve: the serving image's JPEG decoding (reduced-scale draft) and numpy
preprocessing from kennel_serve, the manifest's ONNX file in an ONNX Runtime session with the library's
defaults but for its thread count (what a user of the peer writes), and the serving image's JSON answer.
Runs inside a peer's environment; configured by environment variables, which the peers' processes inherit
from `host.py`:

    KENNEL_PEER_MODEL_DIR     the model directory
    KENNEL_PEER_PRECISION     fp32 or int8
    KENNEL_PEER_ORT_THREADS   ONNX Runtime intra-op threads in each worker process
"""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from kennel_serve.codecs import decode, read_header, top_predictions
from kennel_serve.model import ModelManifest

MAX_IMAGE_PIXELS = 40_000_000  # the serving image's default KENNEL_MAX_IMAGE_PIXELS
TOP_K = 5


class PeerClassifier:
    """Image bytes to a preprocessed array (`prepare`), a stacked batch to answers (`answer`)."""

    def __init__(self) -> None:
        model_dir = Path(os.environ["KENNEL_PEER_MODEL_DIR"])
        self.manifest = ModelManifest.read(model_dir)
        precision = self.manifest.choose(os.environ.get("KENNEL_PEER_PRECISION", "fp32"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("KENNEL_PEER_ORT_THREADS", "1"))
        self.session = ort.InferenceSession(
            str(model_dir / self.manifest.models[precision]), options, providers=["CPUExecutionProvider"]
        )
        pre = self.manifest.preprocessing
        self.session.run(None, {self.manifest.input_name: np.zeros((1, 3, pre.crop, pre.crop), np.float32)})

    def prepare(self, body: bytes) -> np.ndarray:
        image = decode(read_header(body, MAX_IMAGE_PIXELS), self.manifest.preprocessing.least_decode_size)
        return self.manifest.preprocessing(image)

    def answer(self, batch: np.ndarray) -> list[dict]:
        """One JSON-ready answer per image, shaped as the serving image's top_k answer."""
        (logits,) = self.session.run(None, {self.manifest.input_name: batch})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return [{"predictions": [one]} for one in top_predictions(probabilities, self.manifest.labels, TOP_K)]
