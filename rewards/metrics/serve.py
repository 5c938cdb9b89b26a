"""The metrics endpoint of a worker or beat: `GET /metrics` on REWARDS_METRICS_PORT.

A prefork worker's jobs run in pool processes, each counting into files of
its own under one folder per worker (prometheus-client's multiprocess mode,
set up in workers/__init__.py before prometheus_client is imported); the
worker's main process serves the sum. Beat serves the servers' state
(rewards.metrics.state) the same way.

Who may read it: the endpoint listens on REWARDS_METRICS_ADDRESS, 127.0.0.1
unless configured, and settings refuse any other address without
REWARDS_METRICS_BASIC_AUTH (user:password), which it then asks of every
request, as Prometheus's `basic_auth` sends it. The series name jobs,
queues, reasons and XP totals, never a partner.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.registry import Collector

from rewards import settings as settings_module
from rewards.logs import log_event

logger = logging.getLogger("rewards.metrics")

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """A scrape every few seconds is not worth a log line."""


def with_basic_auth(app: WsgiApp, credentials: str) -> WsgiApp:
    """`app`, answered only to requests that carry `credentials` (user:password) as HTTP basic auth."""
    expected = "Basic " + base64.b64encode(credentials.encode()).decode()

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), expected.encode()):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="rewards metrics"'),
                                                ("Content-Type", "text/plain")])
            return [b"rewards metrics: basic auth required (REWARDS_METRICS_BASIC_AUTH)\n"]
        return app(environ, start_response)

    return guarded


def registry(*extra: Collector) -> CollectorRegistry:
    """What this process serves: every pool process's counts, and `extra` collectors."""
    served = CollectorRegistry()
    multiprocess.MultiProcessCollector(served)
    for collector in extra:
        served.register(collector)
    return served


def start(role: str, *extra: Collector) -> WSGIServer | None:
    """Serve /metrics in a background thread when REWARDS_METRICS_PORT is set.

    A port that cannot be bound costs the metrics, not the worker: it is
    logged, and Prometheus's `up` for this target (the RewardsProcessDown
    alert) says the rest.
    """
    current = settings_module.get()
    if current.metrics_port is None:
        return None
    app = make_wsgi_app(registry(*extra))
    if current.metrics_basic_auth:
        app = with_basic_auth(app, current.metrics_basic_auth)
    server_class = _IPv6Server if ":" in current.metrics_address else _Server
    try:
        server = make_server(current.metrics_address, current.metrics_port, app, server_class, _QuietHandler)
    except OSError as error:
        log_event(logger, logging.ERROR, "metrics.unavailable", role=role, address=current.metrics_address,
                  port=current.metrics_port, error=str(error))
        return None
    threading.Thread(target=server.serve_forever, name="rewards-metrics", daemon=True).start()
    log_event(logger, logging.INFO, "metrics.serving", role=role, address=current.metrics_address,
              port=current.metrics_port, basic_auth=bool(current.metrics_basic_auth))
    return server
