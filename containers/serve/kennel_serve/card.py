"""GET /model and GET /model/report: the model's manifest and its training report, for the page that the
local proxy serves (kennel_proxy/page/).

Neither route is part of SageMaker's hosting contract, and neither can be reached on AWS: InvokeEndpoint
only ever sends POST /invocations to the container (and SageMaker itself only GET /ping), so nothing here
leaks through an endpoint. Locally the proxy's adapter (kennel_proxy/local_adapter.py) forwards these two
paths.
"""

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from kennel_serve.codecs import InferenceError
from kennel_serve.loading import ModelState
from kennel_serve.settings import Settings

REPORT = "report.html"  # written into the model directory by the training image, when it writes one
# The report is the training image's own self-contained page: it may run its inline scripts, draw inline
# styles and data: images, and nothing else (no request leaves the page, no form, no frame).
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "sandbox allow-scripts; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
router = APIRouter()


def read_manifest(model_dir: Path) -> dict:
    """The model directory's manifest.json as it is, or a 404 when the directory has none."""
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InferenceError(404, "no_manifest", "the model directory has no manifest.json") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InferenceError(500, "unreadable_manifest", f"manifest.json cannot be read: {err}") from None
    if not isinstance(manifest, dict):
        raise InferenceError(500, "unreadable_manifest", "manifest.json is not a JSON object")
    return manifest


@router.get("/model")
async def model(request: Request) -> JSONResponse:
    """{"manifest", "precision", "report"}: the manifest, which model answers (null while loading or for a
    custom handler), and the report's path when the model directory has one."""
    settings: Settings = request.app.state.settings
    state: ModelState = request.app.state.model
    classifier = state.runtime.classifier if state.runtime is not None else None
    return JSONResponse(
        {
            "manifest": read_manifest(settings.model_dir),
            "precision": classifier.precision if classifier else None,
            "report": "model/report" if (settings.model_dir / REPORT).is_file() else None,
        }
    )


@router.get("/model/report")
async def report(request: Request) -> FileResponse:
    settings: Settings = request.app.state.settings
    path = settings.model_dir / REPORT
    if not path.is_file():
        raise InferenceError(404, "no_report", f"the model directory has no {REPORT}")
    return FileResponse(
        path, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP}
    )
