"""Read and validate the policy directory; errors name file, line, key and reason.

Unknown ``*.toml`` names are an error, so a misspelt file is never silently ignored.
"""

from __future__ import annotations

import difflib
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
        raise PolicyError([f"{directory}: ポリシーのディレクトリがありません (MAILGUARD_POLICIES_DIR)"])
    problems: list[str] = []
    parsed: dict[str, _Strict] = {}
    roster = load_roster(directory / ROSTER_FILE, problems) if (directory / ROSTER_FILE).exists() else None
    for path in sorted(directory.glob("*.toml")):
        if path.name not in FILES:
            problems.append(f"{path}: 知らないポリシーファイルです (使えるのは {', '.join(FILES)})")
            continue
        model = _load_file(path, FILES[path.name], problems)
        if model is not None:
            parsed[path.name] = model
    for name in REQUIRED:
        if not (directory / name).exists():
            problems.append(f"{directory / name}: 必須のポリシーファイルがありません")
    if problems:
        raise PolicyError(problems)
    return Policy.build(
        parsed["organisation.toml"],
        parsed.get("address_book.toml", AddressBookFile()),
        parsed.get("decision.toml", DecisionFile()),
        parsed.get("fax.toml", FaxFile()),
        roster,
        parsed.get("notify.toml"),
    )


def _load_file(path: Path, model: type[_Strict], problems: list[str]) -> _Strict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: 読めません: {exc}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f":{match.group(1)}" if match else ""
        problems.append(f"{path}{where}: TOML の書き方の誤り: {exc}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = locate(text, loc)
            where = f":{line}" if line else ""
            problems.append(f"{path}{where}: {_dotted(loc)}: {_japanese(err, model)}")
        return None


def _vocabulary(model: type) -> set[str]:
    """Every key the policy files know, for "did you mean"."""
    names: set[str] = set()
    stack = [model]
    while stack:
        current = stack.pop()
        for name, field in getattr(current, "model_fields", {}).items():
            names.add(name)
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(arg, type) and hasattr(arg, "model_fields") and arg not in stack:
                    stack.append(arg)
    return names


def _japanese(err: dict, model: type) -> str:
    """A pydantic error as an admin reads it: in Japanese, with the key and a suggestion."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        known = sorted(_vocabulary(model))
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [k for k in known if k.startswith(key)][:1]
        return f"知らない項目「{key}」です" + (f"。「{close[0]}」の書き間違いではありませんか" if close else "")
    if kind == "missing":
        return "必須の項目がありません"
    if kind == "literal_error":
        return f"値は次のどれかにしてください: {ctx.get('expected', '')} (いまの値: {err.get('input')!r})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        return {"greater_than_equal": f"{bound} 以上", "greater_than": f"{bound} より大きい値",
                "less_than_equal": f"{bound} 以下", "less_than": f"{bound} より小さい値"}[kind] + "にしてください"
    if kind in ("string_too_short", "too_short"):
        return f"短すぎます (最小 {ctx.get('min_length', '?')})"
    if kind in ("string_too_long", "too_long"):
        return f"長すぎます (最大 {ctx.get('max_length', '?')})"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "値の形式が違います (文字列は \"…\" で囲みます)"   # never the value: it may be an agreed key
    return err["msg"].removeprefix("Value error, ")


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

