"""tsa: asks an RFC 3161 time-stamping authority to stamp the send log's checkpoints.

Receives the checkpoints signed less than an hour ago that have no token yet
(``Store.unstamped_checkpoints``); for each, POSTs a TimeStampReq (SHA-256 imprint of
``store.timestamps.stamped_bytes``, a nonce, certReq) as ``application/timestamp-query`` over
HTTP(S) (RFC 3161 §3.4), checks the reply (status, nonce, imprint; the whole chain too when
MAILGUARD_TSA_CA names the TSA's root) and hands it to ``Store.save_timestamp``, which keeps it
in the database and in ``checkpoints.jsonl``.
Settings: MAILGUARD_TSA_URL (empty: nothing is asked), MAILGUARD_TSA_CA.
On failure (TSA unreachable, refused, a reply that does not check): one log line, and the
checkpoint is asked for again at the next checkpoint round for up to an hour
(``timestamps.MAX_AGE``), after which it stays unstamped (verify counts those).
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from ..settings import Settings
from ..store import timestamps

log = logging.getLogger("mailguard.qmgr")
TIMEOUT = 10.0     # seconds for one whole TSA request (connect, send, the reply to its last byte)
ROUND = 60.0       # seconds for one round of requests
FINAL = 5.0        # seconds for the round at stop
MAX_REPLY = 64 * 1024   # bytes: a token is about 1-5 KB; a bigger reply is not a token


async def stamp_pending(settings: Settings, store, seconds: float = ROUND) -> int:
    """Stamp every checkpoint still waiting for a token, within ``seconds`` in all; the number stamped."""
    if not settings.tsa_url:
        return 0
    try:
        async with asyncio.timeout(seconds):
            return await _round(settings, store)
    except TimeoutError:
        log.warning("time-stamping authority %s did not answer within %gs; asked again at the next checkpoint",
                    settings.tsa_url, seconds)
        return 0


async def _round(settings: Settings, store) -> int:
    roots = timestamps.load_roots(settings.tsa_ca.read_bytes()) if settings.tsa_ca else None
    journal = settings.data_dir / "checkpoints.jsonl"
    done = 0
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        for checkpoint in await asyncio.to_thread(store.unstamped_checkpoints):
            try:
                async with asyncio.timeout(TIMEOUT):   # httpx's timeout is per read: a reply dribbled byte by byte
                    response, der = await _request(client, settings.tsa_url, timestamps.stamped_bytes(checkpoint),
                                                   roots)
            except (httpx.HTTPError, timestamps.TimestampError, TimeoutError) as exc:
                log.warning("time-stamping authority %s did not stamp checkpoint %d: %s; asked again at the next "
                            "checkpoint (for up to an hour)", settings.tsa_url, checkpoint["size"], exc)
                break   # the TSA is down or broken: the rest wait for the next round
            await asyncio.to_thread(store.save_timestamp, checkpoint, response, der, journal)
            log.info("send log checkpoint %d stamped by %s at %s", checkpoint["size"], settings.tsa_url,
                     response.tst_info.gen_time.isoformat())
            done += 1
    return done


async def _request(client: httpx.AsyncClient, url: str, data: bytes, roots):
    request = TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256).build()
    async with client.stream("POST", url, content=request.as_bytes(),
                             headers={"Content-Type": "application/timestamp-query"}) as reply:
        if reply.status_code != 200:
            raise timestamps.TimestampError(f"HTTP {reply.status_code}")
        der = bytearray()
        async for chunk in reply.aiter_bytes():
            der += chunk
            if len(der) > MAX_REPLY:
                raise timestamps.TimestampError(f"reply over {MAX_REPLY} bytes")
    response = await asyncio.to_thread(timestamps.check, bytes(der), data, roots, request.nonce)
    return response, bytes(der)
