"""The HTTP service: a Starlette app around a ServedModel.

    POST /v1/detect   an image (the body, or the `file` field of a multipart form) -> JSON
                      {"width", "height", "detections": [{"bbox": [x, y, w, h], "score",
                      "category_id", "category_name"}, ...]}; `?score_thresh=T` keeps the
                      detections scoring above T (it filters the model's own output, so a T below
                      the model's threshold adds nothing)
    GET /healthz      200 and the model's description once it is loaded
    GET /metrics      Prometheus text format
    GET /             a page to try the model on an image

Every refusal is a 4xx with JSON {"error": ...} naming what was wrong. Requests wait in a
DynamicBatcher whose inference thread runs the model; at shutdown the server first finishes the
requests in flight (uvicorn), then the batcher runs whatever still waits.
"""

import json
import math
import os
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib.resources import files

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from simpledet.serve.batcher import BatcherClosed, DynamicBatcher
from simpledet.serve.metrics import MetricsMiddleware, ServiceMetrics
from simpledet.serve.model import ServedModel, load_served_model
from simpledet.serve.upload import RequestError, decode_image, read_upload

# the settings a worker process reads to build its own app (`--workers N`)
SETTINGS_VARIABLE = "SIMPLEDET_SERVE_SETTINGS"
ROUTES_IN_WORDS = "POST /v1/detect, GET /healthz, GET /metrics and GET /"


@dataclass
class ServeSettings:
    weights: str
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_bytes: int = 20_000_000


def build_app(model: ServedModel, max_batch: int = 8, max_wait_ms: float = 10.0,
              max_bytes: int = 20_000_000) -> Starlette:
    metrics = ServiceMetrics(max_batch)
    batcher = DynamicBatcher(model, max_batch, max_wait_ms / 1000.0, metrics)
    page = files("simpledet.serve").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.close()

    async def detect(request: Request) -> Response:
        score_thresh = _score_thresh(request)
        data = await read_upload(request, max_bytes)
        image, key = await run_in_threadpool(decode_with_key, data)  # decoding a large image would stall the loop
        height, width = image.shape[-2:]
        try:
            detections = await batcher.submit(image, key)
        except BatcherClosed as e:
            raise RequestError(503, str(e)) from None
        return JSONResponse({"width": width, "height": height, "detections": detections.above(score_thresh)})

    def decode_with_key(data: bytes) -> tuple:
        image = decode_image(data)
        try:
            return image, model.batch_key(image)
        except ValueError as e:
            raise RequestError(422, str(e)) from None

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model.description, "score_thresh": model.score_thresh,
                             "max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_bytes": max_bytes})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    routes = [Route("/v1/detect", detect, methods=["POST"]), Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", prometheus, methods=["GET"]), Route("/", index, methods=["GET"])]
    handlers = {RequestError: _request_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers,
                     middleware=[Middleware(MetricsMiddleware, metrics=metrics, paths=[r.path for r in routes])])


def _score_thresh(request: Request) -> float | None:
    unknown = sorted(set(request.query_params) - {"score_thresh"})
    if unknown:
        raise RequestError(400, f"unknown query parameter {unknown[0]!r}: /v1/detect takes only score_thresh")
    text = request.query_params.get("score_thresh")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise RequestError(400, f"score_thresh must be a number from 0 to 1, got {text!r}")
    return value


async def _request_error(request: Request, exc: RequestError) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such path, wrong method), in words and as JSON."""
    path = request.url.path
    if exc.status_code == 404:
        message = f"no such path: {path} (the service answers {ROUTES_IN_WORDS})"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed on {path} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # a fault of the service, not of the request; uvicorn logs its traceback
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def settings_to_environment(settings: ServeSettings) -> None:
    os.environ[SETTINGS_VARIABLE] = json.dumps(asdict(settings))


def app_from_environment() -> Starlette:
    """The app a worker process builds (uvicorn's factory), from the settings the parent left in
    the environment; each worker loads its own copy of the model."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_VARIABLE]))
    model = load_served_model(settings.weights, settings.config, settings.overrides)
    return build_app(model, settings.max_batch, settings.max_wait_ms, settings.max_bytes)
