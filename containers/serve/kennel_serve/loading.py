"""Loading the model in the background while the server already answers: `load_model` fills a `ModelState`,
which /ping reports and /invocations reads, so neither ever waits for the load."""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kennel_serve import workers
from kennel_serve.handler import CustomHandlerRuntime, handler_path
from kennel_serve.metrics import ServingMetrics
from kennel_serve.model import ImageClassifier, ModelLoadError
from kennel_serve.runtime import ClassifierRuntime, Runtime
from kennel_serve.settings import Settings

log = logging.getLogger("kennel_serve")


@dataclass
class ModelState:
    """What /ping reports, kept in memory so that /ping never waits for anything."""

    status: str = "loading"
    reason: str = "the model is loading"
    runtime: Runtime | None = None


def load_runtime(settings: Settings, metrics: ServingMetrics) -> Runtime:
    """A custom handler if the model directory has one, else the Kennel model. Blocking: runs on a thread."""
    if handler_path(settings).is_file():
        return CustomHandlerRuntime(settings)
    return ClassifierRuntime(
        ImageClassifier(settings.model_dir, settings.threads_per_worker, settings.precision),
        settings,
        metrics,
    )


async def _in_daemon_thread(function: Callable[[], Runtime]) -> Runtime:
    """Runs `function` on a daemon thread: a model_fn that never returns must not keep the process alive
    after SIGTERM (asyncio.to_thread's pool threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Runtime] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def work() -> None:
        try:
            result, error = function(), None
        except BaseException as err:  # handed to the awaiting coroutine, which decides
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped while loading
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="model-load", daemon=True).start()
    return await future


async def load_model(state: ModelState, settings: Settings, metrics: ServingMetrics) -> None:
    """Loads, starts and records the runtime in `state`; a failure is recorded there too, never raised."""
    try:
        runtime = await _in_daemon_thread(lambda: load_runtime(settings, metrics))
    except ModelLoadError as err:
        state.status, state.reason = "failed", str(err)
        log.error("model load failed: %s", err)
        return
    except Exception as err:  # anything else is a bug or a broken file; /ping must still say what happened
        state.status, state.reason = "failed", f"the model failed to load: {err!r}"
        log.exception("model load failed")
        return
    runtime.start()
    metrics.model_load_seconds.set(runtime.load_seconds)
    state.runtime, state.status, state.reason = runtime, "ready", ""
    workers.announce_ready()
    classifier = runtime.classifier
    log.info(
        "model ready",
        extra={
            "load_seconds": round(runtime.load_seconds, 3),
            "kind": type(runtime).__name__,
            # Which model answers, and the accuracy guard's figures for the INT8 one.
            "precision": classifier.precision if classifier else None,
            "requested_precision": settings.precision,
            "quantization": classifier.manifest.quantization if classifier else None,
        },
    )
