"""What /openapi.json (and /docs) says of POST /invocations beyond what FastAPI infers: the route reads its
body itself, so the request types, headers and error statuses are written out here."""

from kennel_serve.codecs import RESPONSE_TYPES

INVOCATIONS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/x-image": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["b64"],
                                "properties": {"b64": {"type": "string", "format": "byte"}},
                            },
                        }
                    },
                }
            },
            "application/jsonlines": {"schema": {"type": "string"}},
        },
    },
    "parameters": [
        {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"}},
        {
            "name": "X-Amzn-SageMaker-Custom-Attributes",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
        {
            "name": "X-Amzn-SageMaker-Inference-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "200": {
            "description": "Per image, the top-k predictions, or the network's scores (output=scores)",
            "content": {kind: {"schema": {"type": ["object", "array"]}} for kind in RESPONSE_TYPES},
        },
        **{
            str(status): {"description": text}
            for status, text in {
                400: "undecodable image, bad base64 or bad JSON",
                406: "no acceptable response type",
                413: "body over SAGEMAKER_MAX_PAYLOAD_IN_MB",
                415: "unsupported Content-Type",
                503: "the model is not loaded",
                504: "past SAGEMAKER_MODEL_SERVER_TIMEOUT",
            }.items()
        },
    },
}
