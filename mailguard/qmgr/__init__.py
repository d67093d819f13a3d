"""qmgr: the queue manager — schedules every message from acceptance to its end.

Receives: messages the SMTP front stored (``incoming``), people's actions made
through the store (console, API, CLI), the clock. Hands on: verdicts and states
to the store, claimed messages to ``smtp`` for delivery, notices and DSNs back
into the queue. ``manager``: the scan loop, decisions, dispatch, expiry;
``settle``: what an attempt means (pure); ``actions``: what a person may do
(the one rule book for console, API and CLI; imports no pipeline).

Standards: RFC 5321 §4.5.4.1 (retry schedule, give up after the lifetime), RFC 3464 (DSN).
Settings: MAILGUARD_QUEUE_SCAN_INTERVAL, _DELIVERY_CONCURRENCY, _RETRY_MIN_BACKOFF,
_RETRY_MAX_BACKOFF, _QUEUE_LIFETIME, _HOLD_DELAY, _INSPECT_*.
On failure: one message's fault holds or defers that message alone, logged with its queue id.
"""
