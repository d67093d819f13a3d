"""metrics: what a monitoring system asks of a running relay (Prometheus text format, ``/metrics``).

Counters and histograms live in this process (prometheus-client's default registry) and are
bumped by the stages: ``smtpd`` when a message is committed (accepted), ``qmgr`` when an
attempt is recorded (per recipient: delivered, deferred, bounced) and when a content scan or a
delivery ends (latency histograms, seconds). The number of messages per state is not counted
here but read from the store when scraped (``QueueCollector``), so it is right whatever process
changed it. Every series carries ``node`` (the host name, MAILGUARD_HOSTNAME) so that several
relays can be told apart. Nothing here names a sender, a recipient or a subject.
Served by the console app (``console.app``): ``/metrics``, and ``/healthz`` (``health``).
"""

from __future__ import annotations

import socket

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

NODE = socket.gethostname()

ACCEPTED = Counter("mailguard_messages_accepted", "Messages committed to the queue and answered 250", ["node"])
RECIPIENTS = Counter("mailguard_recipient_results", "Delivery results per recipient", ["node", "result"])
SCAN_SECONDS = Histogram("mailguard_scan_seconds", "Content scan time per message (worker pool)", ["node"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150))
DELIVERY_SECONDS = Histogram("mailguard_delivery_seconds", "Time of one delivery attempt to the upstream", ["node"],
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def accepted() -> None:
    ACCEPTED.labels(NODE).inc()


def recipient_results(results: dict) -> None:
    """``results``: {recipient: (RecipientStatus, reply)} of one settled attempt."""
    for status, _ in results.values():   # a recipient still pending after an attempt was deferred
        RECIPIENTS.labels(NODE, "deferred" if str(status) == "pending" else str(status)).inc()


def scanned(seconds: float) -> None:
    SCAN_SECONDS.labels(NODE).observe(seconds)


def delivered(seconds: float) -> None:
    DELIVERY_SECONDS.labels(NODE).observe(seconds)


class QueueCollector:
    """``mailguard_messages{state}``: messages in the store per state, read at scrape time."""

    def __init__(self, counts):
        self.counts = counts   # () -> {state: count}

    def describe(self):
        return []

    def collect(self):
        family = GaugeMetricFamily("mailguard_messages", "Messages in the store per state", labels=["node", "state"])
        for state, count in sorted(self.counts().items()):
            family.add_metric([NODE, state], count)
        yield family


def exposition(counts) -> tuple[bytes, str]:
    """(body, content type) of ``/metrics``: this process's counters and the store's states."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    queue = CollectorRegistry(auto_describe=False)
    queue.register(QueueCollector(counts))
    return generate_latest(REGISTRY) + generate_latest(queue), CONTENT_TYPE_LATEST
