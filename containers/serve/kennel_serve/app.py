"""The FastAPI app: the factory and its lifespan, which loads the model in the background. The routes
(routes.py), the request middleware (middleware.py), the error responses (errors.py) and the OpenAPI
additions (openapi.py) each live in their own module.

    uvicorn --factory kennel_serve.app:create_app --port 8080     # settings from the environment
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kennel_serve import card
from kennel_serve.errors import EXCEPTION_HANDLERS
from kennel_serve.loading import ModelState, load_model
from kennel_serve.metrics import ServingMetrics
from kennel_serve.middleware import RequestContext
from kennel_serve.routes import router
from kennel_serve.settings import Settings

log = logging.getLogger("kennel_serve")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loading runs in the background: the server accepts connections at once and /ping says "loading"."""
    state, metrics = app.state.model, app.state.metrics
    loading = asyncio.create_task(load_model(state, app.state.settings, metrics))
    yield
    loading.cancel()
    await asyncio.gather(loading, return_exceptions=True)
    if state.runtime is not None:
        await state.runtime.close()
    metrics.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The serving app. With no argument, settings come from the environment (how `serve` starts it)."""
    settings = settings or Settings.from_env()
    metrics = ServingMetrics()
    app = FastAPI(
        title="Kennel serving", version="1", lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS
    )
    app.state.model = ModelState()
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(card.router)  # local only: InvokeEndpoint never reaches it (card.py says why)
    routes = [route.path for route in [*router.routes, *card.router.routes]]
    app.add_middleware(RequestContext, metrics=metrics, routes=routes)
    log.info("settings", extra={"settings": settings.describe()})
    return app
