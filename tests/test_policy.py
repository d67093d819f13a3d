"""Policies: validated, located errors, hot reload that keeps the last good policy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import HERE, REGISTERED, send, wait_for
from mailguard import policy

NEW_PARTNER = "soudan@kita-houkatsu.example.jp"


def _write(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    # the watcher compares (mtime, size): make sure a rewrite within one mtime tick is still new
    stamp = max(time.time_ns(), before + 1_000_000)
    os.utime(path, ns=(stamp, stamp))


def test_broken_policy_is_reported_and_the_previous_policy_stays(relay, upstream):
    book = relay.policies / "address_book.toml"
    good = book.read_text(encoding="utf-8")
    _write(book, good + f'\n[[email]]\naddress = "{NEW_PARTNER}"\norganisation = "北地域包括支援センター"\n'
                        '\n[[email]]\naddress = "broken@@example"\norganisation = "x"\n')
    text = book.read_text(encoding="utf-8").splitlines()
    bad_line = text.index('address = "broken@@example"') + 1
    bad_index = sum(1 for line in text if line == "[[email]]") - 1
    expected = f"address_book.toml:{bad_line}: email[{bad_index}].address: not a valid e-mail address"
    wait_for(lambda: "address_book.toml:" in relay.log(), what="policy error in the log")
    line = next(l for l in relay.log().splitlines() if "address_book.toml:" in l)
    assert "previous policy stays in force" in line
    assert expected in line

    check = relay.cli("policy", "check", check=False)
    assert check.returncode == 1
    assert expected in check.stderr

    # The old policy is in force: the registered partner is only delayed, and the
    # partner added in the broken file is still unknown.
    registered = send(relay, [REGISTERED])
    added = send(relay, [NEW_PARTNER])
    wait_for(lambda: relay.state(registered) == "delayed", what="delayed")
    wait_for(lambda: relay.state(added) == "awaiting_approval", what="awaiting approval")

    # Fixed: the new partner is registered without a restart.
    _write(book, good + f'\n[[email]]\naddress = "{NEW_PARTNER}"\norganisation = "北地域包括支援センター"\n')
    wait_for(lambda: "policy reloaded" in relay.log(), what="reload")
    again = send(relay, [NEW_PARTNER])
    wait_for(lambda: relay.state(again) == "delayed", what="delayed after reload")
    relay.act(again, "release", actor="test:staff")
    upstream.wait_to(NEW_PARTNER)


def test_serve_refuses_to_start_on_a_broken_policy(make_relay):
    relay = make_relay()
    (relay.policies / "organisation.toml").write_text("[organisation\nname = 1\n", encoding="utf-8")
    result = relay.cli("serve", check=False)
    assert result.returncode == 1
    assert "organisation.toml:1: TOML の書き方の誤り" in result.stderr


def test_policy_check_accepts_the_shipped_examples():
    loaded = policy.load(HERE.parent / "policies")
    assert loaded.organisation.internal_domains
    assert loaded.address_book.email


@pytest.mark.parametrize("files, expected", [
    ({"organisation.toml": '[organisation]\nname = "x"\ninternal_domains = []\n'},
     "organisation.toml:3: organisation.internal_domains: 短すぎます (最小 1)"),
    ({"organisation.toml": '[organisation]\nname = "x"\ninternal_domains = ["a.example.jp"]\n',
      "decision.toml": '[actions]\nexternal_recipient = "delay"\nunregistred_recipient = "approval"\n'},
     "decision.toml:3: actions.unregistred_recipient: 知らない項目「unregistred_recipient」です。"
     "「unregistered_recipient」の書き間違いではありませんか"),
    ({"organisation.toml": '[organisation]\nname = "x"\ninternal_domains = ["a.example.jp"]\n[hold]\ndelay = 5\n'},
     "organisation.toml:5: hold.delay: 知らない項目「delay」です。「delay_seconds」の書き間違いではありませんか"),
    ({"organisation.toml": '[organisation]\nname = "x"\ninternal_domains = ["a.example.jp"]\n',
      "adress_book.toml": ""},
     "adress_book.toml: 知らないポリシーファイルです"),
    ({"address_book.toml": ""}, "organisation.toml: 必須のポリシーファイルがありません"),
])
def test_errors_name_file_line_key_and_reason(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(policy.PolicyError) as info:
        policy.load(tmp_path)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_internal_domains_match_subdomains_and_case(tmp_path):
    (tmp_path / "organisation.toml").write_text(
        '[organisation]\nname = "x"\ninternal_domains = ["Sakura.Example.JP"]\n', encoding="utf-8")
    loaded = policy.load(tmp_path)
    assert loaded.is_internal("a@sakura.example.jp")
    assert loaded.is_internal("a@MAIL.sakura.example.jp")
    assert not loaded.is_internal("a@sakura.example.jp.evil.example")
    assert not loaded.is_internal("a@notsakura.example.jp")


def test_address_book_lookup_is_case_insensitive_and_knows_domains(tmp_path):
    (tmp_path / "organisation.toml").write_text(
        '[organisation]\nname = "x"\ninternal_domains = ["a.example.jp"]\n', encoding="utf-8")
    (tmp_path / "address_book.toml").write_text(
        '[[email]]\naddress = "Tanaka@Hospital.example.jp"\norganisation = "病院"\n'
        '[[domain]]\ndomain = "city.example.lg.jp"\norganisation = "市役所"\n', encoding="utf-8")
    loaded = policy.load(tmp_path)
    assert loaded.lookup("tanaka@hospital.EXAMPLE.jp").organisation == "病院"
    assert loaded.lookup("anyone@city.example.lg.jp").organisation == "市役所"
    assert loaded.lookup("tanaka@hospital.example.com") is None
