"""The FastAPI application."""

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def create_app(model_dir: Path | None = None) -> FastAPI:
    model_dir = model_dir or Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    app = FastAPI(title="Kennel serving")

    @app.get("/ping")
    def ping() -> JSONResponse:
        if (model_dir / "model.onnx").is_file():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "reason": f"no model.onnx in {model_dir}"}, status_code=503)

    return app
