"""Console routes for operations: ``GET /metrics`` (Prometheus text format) and ``GET /healthz``.

Neither needs a login (a monitoring system has none) and neither shows a sender, a recipient
or a subject: counts and latencies only (``metrics``). ``/metrics`` answers only clients in
MAILGUARD_METRICS_NETWORKS (default loopback; else 403). ``/healthz`` answers anyone:
200 ``{"status": "ok", ...}`` when the database answers a query and every SMTP listener is
serving, else 503 with what failed, for a load balancer or systemd's watchdog to act on.
Both run their store queries on a thread (``def`` routes), never on the event loop.
"""

from __future__ import annotations

import ipaddress
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from .. import metrics
from ..settings import Settings
from ..store import Store

log = logging.getLogger("mailguard.console")


def add_ops_routes(app: FastAPI, settings: Settings, store: Store, listeners) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics_page(request: Request):
        if not _allowed(request, settings):
            raise HTTPException(403)
        body, content_type = metrics.exposition(store.state_counts)
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        status = {"database": "ok", "listeners": {name: ("ok" if up else "down") for name, up in listeners()}}
        try:
            store.ping()
        except Exception as exc:   # the store's own error class varies with the backend
            log.error("health check: the database does not answer: %s", exc)
            status["database"] = "down"
        healthy = status["database"] == "ok" and all(v == "ok" for v in status["listeners"].values())
        return JSONResponse({"status": "ok" if healthy else "down", **status}, status_code=200 if healthy else 503,
                            headers={"Cache-Control": "no-store"})


def _allowed(request: Request, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped   # a dual-stack listener's ::ffff:127.0.0.1
    return any(ip in net for net in settings.metrics_networks)
