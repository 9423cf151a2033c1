"""`simpledet serve [CONFIG] --weights W`: the HTTP detection service (simpledet/serve/app.py).

The model is loaded before the port is opened, so a bad CONFIG or weights file stops the command
with its message; the printed URL means the service answers. SIGTERM or Ctrl-C stops it
gracefully: requests in flight are answered, then the process exits (0 after SIGTERM).
"""

import os
import signal
import socket

from simpledet.errors import UserError

SERVE_PACKAGES = ("starlette", "uvicorn", "python_multipart", "prometheus_client")


def add_parser(sub) -> None:
    r = sub.add_parser("serve", help="an HTTP service that detects objects in uploaded images")
    r.add_argument("config", nargs="?", help="config file; may be left out for our checkpoints, which record "
                                             "their config, and for ONNX files")
    r.add_argument("--weights", required=True, help="a checkpoint (.safetensors, .pth) or an exported .onnx file")
    r.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    r.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    r.add_argument("--max-batch", type=int, default=8, dest="max_batch",
                   help="most images per model call (default 8)")
    r.add_argument("--max-wait-ms", type=float, default=10.0, dest="max_wait_ms",
                   help="longest an image waits for others to fill its batch (default 10)")
    r.add_argument("--max-bytes", type=int, default=20_000_000, dest="max_bytes",
                   help="largest request body accepted (default 20000000)")
    r.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own copy of the model (default 1)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    r.set_defaults(func=run)


def run(args) -> None:
    missing = [name for name in SERVE_PACKAGES if not _importable(name)]
    if missing:
        raise UserError(f"serving needs {', '.join(missing)}: pip install 'simpledet-torch[serve]'")
    for flag, value, least in (("--max-batch", args.max_batch, 1), ("--max-wait-ms", args.max_wait_ms, 0),
                               ("--max-bytes", args.max_bytes, 1), ("--workers", args.workers, 1)):
        if value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    import uvicorn

    from simpledet.serve.app import ServeSettings, build_app, settings_to_environment
    from simpledet.serve.model import load_served_model

    settings = ServeSettings(weights=args.weights, config=args.config, overrides=list(args.overrides),
                             max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_bytes=args.max_bytes)
    model = load_served_model(settings.weights, settings.config, settings.overrides)
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    print(f"simpledet serve: http://{where}:{port}/ ({model.description}; batches of up to {args.max_batch} "
          f"images, {args.max_wait_ms:g} ms wait; {args.workers} worker(s))", flush=True)
    if args.workers == 1:
        config = uvicorn.Config(build_app(model, args.max_batch, args.max_wait_ms, args.max_bytes),
                                log_level="info")
        server = uvicorn.Server(config)
        # uvicorn handles SIGTERM while it serves (a graceful shutdown), then passes the signal on
        # to the handler it found; this one ends the command as finished, with exit code 0
        previous = signal.signal(signal.SIGTERM, _exit_0)
        try:
            server.run(sockets=[sock])
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    # each worker process builds its app (and loads its model) from the settings in the environment
    del model
    from uvicorn.supervisors import Multiprocess

    settings_to_environment(settings)
    # the cores shared out between the workers' models, unless the user chose
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    config = uvicorn.Config("simpledet.serve.app:app_from_environment", factory=True, workers=args.workers,
                            log_level="info")
    Multiprocess(config, sockets=[sock]).run()


def _exit_0(signum, frame) -> None:
    raise SystemExit(0)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that the URL printed names the real port (for --port 0)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
