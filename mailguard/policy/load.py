"""Read and validate the policy directory; errors name file, line, key and reason.

Unknown ``*.toml`` names are an error, so a misspelt file is never silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from .files import FILES, REQUIRED, AddressBookFile, DecisionFile, FaxFile, _Strict
from .roster import ROSTER_FILE, load_roster
from .snapshot import Policy


class PolicyError(Exception):
    """One or more policy files are invalid. ``problems`` holds one line each:
    ``policies/address_book.toml:12: email[2].address: not a valid e-mail address …``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load(directory: Path) -> Policy:
    """Read and validate every policy file in ``directory``. Raises PolicyError."""
    if not directory.is_dir():
        raise PolicyError([f"{directory}: policy directory not found (MAILGUARD_POLICIES_DIR)"])
    problems: list[str] = []
    parsed: dict[str, _Strict] = {}
    roster = load_roster(directory / ROSTER_FILE, problems) if (directory / ROSTER_FILE).exists() else None
    for path in sorted(directory.glob("*.toml")):
        if path.name not in FILES:
            problems.append(f"{path}: unknown policy file (expected one of: {', '.join(FILES)})")
            continue
        model = _load_file(path, FILES[path.name], problems)
        if model is not None:
            parsed[path.name] = model
    for name in REQUIRED:
        if not (directory / name).exists():
            problems.append(f"{directory / name}: required policy file is missing")
    if problems:
        raise PolicyError(problems)
    return Policy.build(
        parsed["organisation.toml"],
        parsed.get("address_book.toml", AddressBookFile()),
        parsed.get("decision.toml", DecisionFile()),
        parsed.get("fax.toml", FaxFile()),
        roster,
    )


def _load_file(path: Path, model: type[_Strict], problems: list[str]) -> _Strict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f":{match.group(1)}" if match else ""
        problems.append(f"{path}{where}: TOML syntax error: {exc}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = locate(text, loc)
            where = f":{line}" if line else ""
            reason = err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}{where}: {_dotted(loc)}: {reason}")
        return None


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":   # pydantic's marker for "the key itself was invalid"
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def locate(text: str, loc: tuple) -> int | None:
    """Best-effort 1-based line of a pydantic error location in a TOML text.

    Handles the shapes our files use: ``[table] key``, ``[[array]] n key``, and a
    list value's element (reported at the key's line).
    """
    if not loc:
        return None
    lines = text.splitlines()
    table, rest = str(loc[0]), list(loc[1:])
    index = rest.pop(0) if rest and isinstance(rest[0], int) else 0
    header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
    headers = [n for n, line in enumerate(lines) if header.match(line)]
    if not headers:
        # a top-level key, not a table
        key = re.compile(r"^\s*\"?" + re.escape(table) + r"\"?\s*=")
        return next((n + 1 for n, line in enumerate(lines) if key.match(line)), None)
    start = headers[min(index, len(headers) - 1)]
    if not rest or not isinstance(rest[0], str):
        return start + 1
    key = re.compile(r"^\s*\"?" + re.escape(rest[0]) + r"\"?\s*=")
    for n in range(start + 1, len(lines)):
        if lines[n].lstrip().startswith("["):
            break
        if key.match(lines[n]):
            return n + 1
    return start + 1

