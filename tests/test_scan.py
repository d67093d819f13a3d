"""``mailguard scan`` shows what the relay would do: for every message of the corpus,
the same findings (code, subject, text, suggestion, order) and the same state as the
running relay decided, with the same facts (its store, the loopback DNS)."""

from __future__ import annotations

import base64
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from conftest import INTERNAL, REGISTERED, STAFF, UNREGISTERED, send_raw
from documents import VALID_MY_NUMBER, XLSX, care_plan_xlsx

GATEWAY = "fax.sakura-kaigo.example.jp"


def mail(rcpts: list[str], subject: str = "ご連絡", body: str = "よろしくお願いします。", to_header: str | None = None,
         attachments=()) -> bytes:
    msg = EmailMessage()
    msg["From"] = STAFF
    msg["To"] = to_header or ", ".join(rcpts)
    msg["Subject"] = "placeholder"
    msg.set_content(body)
    for name, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    raw = msg.as_bytes(policy=SMTP)
    # an encoded word as a hostile client writes it stays untouched; anything else is encoded properly
    encoded = subject if subject.startswith("=?") else Header(subject, "utf-8").encode()
    return raw.replace(b"Subject: placeholder", b"Subject: " + encoded.encode())


CORPUS = {
    "internal": ([f"colleague@{INTERNAL}"], {}),
    "registered": ([REGISTERED], {}),
    "unregistered": ([UNREGISTERED], {}),
    "lookalike": (["renkei@minato-hospitel.example.jp"], {}),
    "nxdomain": (["soudan@no-such-partner.example.org"], {}),
    "fax-swapped": ([f"0312345687@{GATEWAY}"], {}),
    "fax-registered": ([f"FAX=+81312345678@{GATEWAY}"], {}),
    "families": ([f"family{i}@gmail.com" for i in range(7)], {}),
    "display-name": (["ichiro.t@freemail.example.net"], {"to_header": "田中 一郎 <ichiro.t@freemail.example.net>"}),
    "care-plan": ([REGISTERED], {"attachments": [("ケアプラン.xlsx", care_plan_xlsx(), XLSX)]}),
    "my-number-body": ([REGISTERED], {"body": f"山田 太郎 様の個人番号は {VALID_MY_NUMBER} です。要介護3。"}),
    "hostile-subject": ([UNREGISTERED], {"subject": "=?UTF-8?B?" + base64.b64encode(b"halt\r\nX-Injected: yes").decode()
                                         + "?="}),
}


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory):
    """Send the whole corpus through one relay; keep (raw, rcpts, stored message) per case."""
    import conftest

    tmp = tmp_path_factory.mktemp("scan")
    up = conftest.Upstream().start()
    dns = conftest.LoopbackDNS()
    dns.nxdomain.add("no-such-partner.example.org")
    relay = conftest.Relay(tmp, conftest.relay_env(tmp, 0, up, dns.port), 0).start()
    try:
        results = {}
        for name, (rcpts, kwargs) in CORPUS.items():
            raw = mail(rcpts, **kwargs)
            queue_id = send_raw(relay, rcpts, raw)
            relay.wait_decided(queue_id, timeout=20)
            decided = next(e for e in relay.events(queue_id) if e.event == "decided")
            results[name] = (raw, rcpts, decided)
        yield relay, dns, results
    finally:
        relay.stop()
        dns.close()
        up.controller.stop()


@pytest.fixture(scope="module")
def inspector():
    from mailguard.check.content.extract import Limits
    from mailguard.check.content.pool import ContentInspector

    pool = ContentInspector(Limits(), 1, 1024 ** 3)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", list(CORPUS))
async def test_scan_decides_as_the_relay_did(corpus_results, inspector, name):
    from mailguard import policy
    from mailguard.scan import scan_file
    from mailguard.settings import load_settings

    relay, dns, results = corpus_results
    raw, rcpts, stored = results[name]
    settings = load_settings(data_dir=Path(relay.env["MAILGUARD_DATA_DIR"]), policies_dir=relay.policies,
                             dns_servers=f"127.0.0.1:{dns.port}", hostname="mailguard.test", web_listen="")
    result = await scan_file(raw, settings, policy.load(relay.policies), rcpts=rcpts, sender=STAFF,
                             inspector=inspector)
    assert result.assessment.state == stored.state                                   # as the log recorded it
    assert [f.to_dict() for f in result.assessment.findings] == list(stored.findings)


def test_the_scan_command_prints_the_decision_in_japanese(corpus_results, tmp_path):
    relay, dns, results = corpus_results
    raw, _, _ = results["lookalike"]
    eml = tmp_path / "lookalike.eml"
    eml.write_bytes(raw)
    out = relay.cli("scan", str(eml), "--offline").stdout
    assert "判定: 承認待ち" in out and "[登録済みの宛先に似たドメイン]" in out and REGISTERED in out
