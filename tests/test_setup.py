"""Setting up: the README's try-out behaves as written, and a wrong setting is one clear line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import HERE, INTERNAL, STAFF, send
from mailguard.settings import SettingsError, load_settings

REPO_POLICIES = HERE.parent / "policies"


def test_the_readme_try_out_ends_as_the_readme_says(make_relay, upstream, tmp_path):
    """README「すぐに試す」: the shipped policies, DNS checks off as the README says (the example
    domains exist nowhere); internal → sent at once, registered partner → held for the delay,
    unregistered → waits for a manager."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    relay = make_relay(MAILGUARD_DNS_CHECKS="false", MAILGUARD_POLICIES_DIR=str(policies),
                       MAILGUARD_HOLD_DELAY="300").start()
    internal = send(relay, [f"colleague@{INTERNAL}"])
    registered = send(relay, ["renkei@minato-hospital.example.jp"])
    stranger = send(relay, ["someone@unknown.example.com"])
    upstream.wait_to(f"colleague@{INTERNAL}")
    assert relay.wait_decided(registered) == "delayed"
    assert relay.findings(registered) == ["external_recipient"]
    assert relay.wait_decided(stranger) == "awaiting_approval"
    assert relay.wait_decided(internal) in ("ready", "delivering", "delivered")
    assert "DNS checks are off" in relay.log()
    assert "trusted networks (relay without AUTH): 127.0.0.0/8" in relay.log()


@pytest.mark.parametrize("value, message", [
    ("192.168.1.10/24", "for the one device write 192.168.1.10/32, for the whole network 192.168.1.0/24"),
    ("printer", "is not an IP network"),
])
def test_a_trusted_network_with_host_bits_is_refused_by_name(value, message):
    with pytest.raises(SettingsError, match="MAILGUARD_TRUSTED_NETWORKS") as caught:
        load_settings(trusted_networks=value)
    assert message in str(caught.value)


def test_a_data_dir_that_cannot_be_written_is_one_japanese_line(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the data directory should be")
    env = {"PATH": "/usr/bin:/bin", "MAILGUARD_DATA_DIR": str(blocked / "var"),
           "MAILGUARD_POLICIES_DIR": str(REPO_POLICIES), "MAILGUARD_SMTP_LISTEN": "127.0.0.1:0",
           "MAILGUARD_WEB_LISTEN": "", "MAILGUARD_DOWNLOAD_LISTEN": "", "MAILGUARD_HOSTNAME": "mailguard.test"}
    result = subprocess.run([sys.executable, "-m", "mailguard", "serve"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "データディレクトリ" in lines[0] and str(blocked / "var") in lines[0]


def test_a_hostname_that_is_no_real_name_is_warned_about(make_relay):
    relay = make_relay(MAILGUARD_HOSTNAME="localhost").start()
    assert "MAILGUARD_HOSTNAME is 'localhost', not a real name" in relay.log()


def test_a_notice_threads_under_a_long_message_id(tmp_path):
    from mailguard.model import Action, Envelope, Origin, QueuedMessage, State, Verdict
    from mailguard.notices import compose

    long_id = "<20261122030000.1A2B3C4D5E6F7A8B9C0D.a-rather-long-identifier-part@mail.sakura-kaigo.example.jp>"
    message = QueuedMessage(
        queue_id="Q1", state=State.DELAYED, origin=Origin.SMTP, envelope=Envelope(STAFF, ("x@example.com",)),
        recipients=(), auth_user=None, client_addr="127.0.0.1", message_id=long_id, subject="件名", size=1,
        received_at=0.0, release_at=300.0, next_attempt_at=None, expires_at=1e9, attempts=0)
    settings = load_settings(hostname="mailguard.test", web_url="https://mailguard.example.jp", data_dir=tmp_path)
    notice = compose.held(message, Verdict(Action.DELAY, 300.0, ()), settings)
    assert f"\r\nIn-Reply-To: {long_id}\r\n".encode() in b"\r\n" + notice.content
    assert f"\r\nReferences: {long_id}\r\n".encode() in b"\r\n" + notice.content
