"""The service's Prometheus metrics, in a registry of its own (so two apps in one process, as in
the tests, never share counts), and the ASGI middleware that counts every request."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    def __init__(self, max_batch: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("simpledet_requests", "HTTP requests answered, by path and status code",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("simpledet_detect_latency_seconds",
                                 "Time from a detect request's arrival to its answer", registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.in_progress = Gauge("simpledet_detect_in_progress", "Detect requests being handled",
                                 registry=self.registry)
        self.queue_depth = Gauge("simpledet_queue_depth", "Images waiting for the inference thread",
                                 registry=self.registry)
        self.batch_size = Histogram("simpledet_batch_size", "Images per model call",
                                    buckets=tuple(range(1, max_batch + 1)), registry=self.registry)
        self.batch_seconds = Histogram("simpledet_batch_seconds", "Time of one model call on a batch",
                                       registry=self.registry)


class MetricsMiddleware:
    """Counts each HTTP request by path and the status code it was answered with (500 if the app
    raised), and times detect requests. Paths other than the service's own are counted as "other",
    so that clients probing random URLs cannot grow the number of time series without bound."""

    def __init__(self, app, metrics: ServiceMetrics, paths: list[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = set(paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = 500

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        detect = path == "/v1/detect"
        if detect:
            self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            if detect:
                self.metrics.in_progress.dec()
                self.metrics.latency.observe(time.perf_counter() - start)
            self.metrics.requests.labels(path=path, status=str(status)).inc()
