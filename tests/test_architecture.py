"""The layout tells the message's way: no import points back up, the console and the
CLI do not load the pipeline, and no module grows past what a reader can hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "mailguard"

# Lower layers never import higher ones; a stage never imports a stage beside it.
RANK = {
    "model": 0, "text": 0, "vault": 0, "endpoints": 0,
    "findings": 1, "address": 1, "settings": 1, "metrics": 1,
    "store": 2, "policy": 2, "users": 2, "data": 2, "tokens": 2.5, "httpheaders": 2.5,
    "notices": 3, "smtp": 3, "smtpd": 3,
    "check": 4,
    "qmgr": 5, "incident": 5.5,
    "console": 6, "scan": 6, "download": 6,
    "receivers": 6.5, "serve": 7, "cli_records": 7.5, "cli": 8, "__main__": 9, "__init__": 9,
}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level mailguard packages a module imports (relative or absolute, anywhere in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth_of_module = len(path.relative_to(PACKAGE).parts) - 1   # 0 for mailguard/x.py
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                base = list(path.relative_to(PACKAGE).parts[:depth_of_module])
                base = base[: len(base) - up] if up else base
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:   # "from . import x" at the top: x is the package
                    parts = [alias.name for alias in node.names][:1]
                found.add(parts[0])
            elif node.module and node.module.startswith("mailguard."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mailguard.")}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


FOUNDATION = {"model", "endpoints", "text", "vault", "httpheaders", "findings", "address", "settings", "store", "policy", "users", "tokens", "data",
              "metrics"}
# The stages may use the foundation and nothing beside them, but for these:
STAGE_USES = {
    "check": {"notices"},                       # the pipeline queues the notices it decides on
    "qmgr": {"check", "notices", "smtp"},       # the scheduler drives the stages
    "console": {"qmgr", "check", "incident"},               # qmgr.actions; check.content.mime for attachment names
    "scan": {"check"},
    "download": {"notices"},                    # tells the sender when a link locks
    "serve": {"qmgr", "smtpd", "console", "download", "receivers"},
    "receivers": {"smtpd"},
    "cli_records": {"incident"},
}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_points_back_up(path):
    source = _top(path)
    for target in _imports(path) - {source}:
        assert target in RANK, f"{path}: unknown package {target}"
        assert RANK[target] < RANK[source], f"{path.relative_to(PACKAGE)} imports {target}: points up or sideways"
        if source not in FOUNDATION and RANK[source] < RANK["cli"]:
            assert target in FOUNDATION | STAGE_USES.get(source, set()), \
                f"{path.relative_to(PACKAGE)} imports {target}: a stage beside it"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_opens_with_its_manual_and_stays_small(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 420, f"{path}: {len(text.splitlines())} lines"
    if path.name != "__main__.py" and text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{path}: no module docstring"


def test_the_console_and_the_cli_do_not_load_the_pipeline():
    code = ("import sys, mailguard.cli, mailguard.console.app, mailguard.qmgr.actions; "
            "heavy = [m for m in ('mailguard.check.pipeline', 'pebble', 'pyzipper', 'sudachipy', 'dns.asyncresolver',"
            " 'mailguard.check.content.detect', 'rapidocr', 'onnxruntime') if m in sys.modules];"
            " print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_every_transition_is_one_row_of_the_table():
    from mailguard.model import State
    from mailguard.store import TRANSITIONS

    reachable = {s for _, targets in TRANSITIONS.values() for s in targets} | {State.INCOMING}
    assert reachable == set(State)                       # every state can be reached
    assert not any(final in leaves for leaves, _ in TRANSITIONS.values()
                   for final in (State.DELIVERED, State.CANCELLED, State.REJECTED, State.BOUNCED))


def test_the_decision_table_is_checked_against_the_catalogue(tmp_path):
    from mailguard import findings, policy

    assert set(policy.DEFAULT_ACTIONS) == set(findings.CATALOGUE)
    (tmp_path / "organisation.toml").write_text('[organisation]\nname = "x"\ninternal_domains = ["x.example"]\n')
    (tmp_path / "decision.toml").write_text('[[rules]]\nwhen = ["first_time_recipent", "personal_data"]\n'
                                            'action = "approval"\n')
    with pytest.raises(policy.PolicyError, match="「first_time_recipient」の書き間違いではありませんか"):
        policy.load(tmp_path)
