"""Admin pages: the address book (e-mail, domain and FAX entries), users, policy status.

The files in policies/ stay the source of truth: every change is made to
``address_book.toml`` through ``policy.update_file`` (comments kept, the whole
policy validated first, atomic replace, the file's mode kept), one at a time,
taken into force at once, and recorded in the send log with the acting admin.
Agreed keys are never shown or logged.

CSV import and export speak Outlook's contact export (Japanese or English column
names) in UTF-8 or CP932, the encoding Excel writes in Japan. Exported cells that
Excel would take for a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
CR) get a leading apostrophe (OWASP CSV injection); import takes it off again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import unicodedata

import tomlkit
from fastapi import FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from ..address import address_key, fax_display, fax_e164, validate_address
from ..policy import PolicyError, PolicyWatcher, decode_csv, update_file
from ..store import Store
from ..store.ledger import HEADER, table
from ..users import ROLES, hash_password

KINDS = {"email": ("address", "organisation", "name", "note"),
         "domain": ("domain", "organisation", "note"),
         "fax": ("number", "organisation", "name", "note")}
KIND_LABELS = {"email": "メールアドレス", "domain": "ドメイン", "fax": "FAX"}
# Outlook contact export columns (Japanese, then English) → our fields.
OUTLOOK_COLUMNS = {
    "address": ("電子メール アドレス", "電子メール アドレス 1", "E-mail Address"),
    "organisation": ("会社", "会社名", "Company"),
    "surname": ("姓", "Last Name"),
    "given": ("名", "First Name"),
    "name": ("名前", "表示名", "Display Name", "Name"),
    "fax": ("会社 FAX", "勤務先 FAX", "Business Fax"),
}
# What makes a spreadsheet read a cell as a formula (OWASP CSV injection), and the
# full-width forms a Japanese Excel may read the same way.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading apostrophe before a formula start."""
    return "'" + value if value.startswith(FORMULA_START) else value


def from_csv_cell(value: str) -> str:
    """The value of a cell written by ``csv_cell`` (an apostrophe before a formula start comes off)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def add_admin_routes(app: FastAPI, store: Store, db, policies: PolicyWatcher, page, current_user, csrf_ok,
                     zone=None) -> None:
    async def admin(request: Request):
        user = await current_user(request)
        if user is None:
            raise HTTPException(401, "login required")
        if user.role != "admin":
            raise HTTPException(403, "admins only")
        return user

    def check(request: Request, token: str) -> None:
        if not csrf_ok(request, token):
            raise HTTPException(403, "CSRF token missing or wrong")

    writing = asyncio.Lock()   # one edit at a time: two admins saving at once must not lose either change

    async def change(user, summary: dict, edit) -> str | None:
        """Apply ``edit`` to address_book.toml; the error text, or None when it took effect."""
        async with writing:
            try:
                await asyncio.to_thread(update_file, policies.directory, "address_book.toml", edit)
            except PolicyError as exc:
                return "\n".join(exc.problems)
            await asyncio.to_thread(policies.refresh)
        await db.record_admin("policy_changed", f"web:{user.username}",
                                {"file": "address_book.toml", **summary})
        return None

    @app.get("/admin", include_in_schema=False)
    async def overview(request: Request, q: str = ""):
        user = await current_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        await admin(request)
        flash = request.session.pop("flash", None) or {}   # set by the last action, shown once
        return page(request, "admin.html", user, **await asyncio.to_thread(_context, policies, store, q),
                    done=flash.get("done", ""), error=flash.get("error", ""))

    @app.post("/admin/address-book/add", include_in_schema=False)
    async def add(request: Request, kind: str = Form(...), csrf_token: str = Form(""),
                  address: str = Form(""), domain: str = Form(""), number: str = Form(""),
                  organisation: str = Form(""), name: str = Form(""), note: str = Form(""), key: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        if kind not in KINDS:
            raise HTTPException(400, "unknown kind")
        values = {"address": address, "domain": domain, "number": number, "organisation": organisation,
                  "name": name, "note": note}
        entry = {k: values[k].strip() for k in KINDS[kind] if values[k].strip()}
        if key and kind in ("email", "domain"):
            entry_with_key = {**entry, "key": key}
        else:
            entry_with_key = entry

        def edit(document):
            if kind not in document:
                document[kind] = tomlkit.aot()
            document[kind].append(entry_with_key)

        error = await change(user, {"action": "add", "kind": kind, "entry": entry,   # never the key
                                    "key": "set" if entry_with_key is not entry else "none"}, edit)
        return _back(request, done="" if error else f"{KIND_LABELS[kind]}を登録しました", error=error or "")

    @app.post("/admin/address-book/delete", include_in_schema=False)
    async def delete(request: Request, kind: str = Form(...), index: int = Form(...), csrf_token: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        removed = {}

        def edit(document):
            entries = document.get(kind)
            if entries is None or not 0 <= index < len(entries):
                raise PolicyError([f"{kind}[{index}]: no such entry (changed meanwhile?)"])
            removed.update({k: str(v) for k, v in entries[index].items() if k != "key"})
            del entries[index]

        error = await change(user, {"action": "delete", "kind": kind, "entry": removed}, edit)
        return _back(request, done="" if error else "削除しました", error=error or "")

    @app.post("/admin/address-book/edit", include_in_schema=False)
    async def edit_entry(request: Request, kind: str = Form(...), index: int = Form(...),
                         csrf_token: str = Form(""), organisation: str = Form(""), name: str = Form(""),
                         note: str = Form(""), key: str = Form(""), remove_key: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        fields = {"organisation": organisation.strip(), "name": name.strip(), "note": note.strip()}

        def edit(document):
            entries = document.get(kind)
            if entries is None or not 0 <= index < len(entries):
                raise PolicyError([f"{kind}[{index}]: no such entry (changed meanwhile?)"])
            for field, value in fields.items():
                if field not in KINDS[kind]:
                    continue
                if value:
                    entries[index][field] = value
                elif field in entries[index] and field != "organisation":
                    del entries[index][field]
            if kind in ("email", "domain"):   # the agreed key: write-only, never shown
                if remove_key and "key" in entries[index]:
                    del entries[index]["key"]
                elif key:
                    entries[index]["key"] = key

        logged = {**fields, "key": "removed" if remove_key else ("changed" if key else "unchanged")}
        error = await change(user, {"action": "edit", "kind": kind, "index": index, "fields": logged}, edit)
        return _back(request, done="" if error else "変更しました", error=error or "")

    @app.post("/admin/users/add", include_in_schema=False)
    async def add_user(request: Request, username: str = Form(...), role: str = Form("staff"),
                       addresses: str = Form(...), password: str = Form(...), csrf_token: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        try:
            if role not in ROLES:
                raise ValueError(f"role must be one of {ROLES}")
            valid = [validate_address(a.strip()) for a in addresses.replace("、", ",").split(",") if a.strip()]
            if not valid or not username.strip():
                raise ValueError("ユーザー名と送信元アドレスを入力してください")
            hashed = await asyncio.to_thread(hash_password, password)
            await db.add_user(username.strip(), hashed, role, valid, f"web:{user.username}")
        except ValueError as exc:
            return _back(request, error=str(exc))
        return _back(request, done=f"利用者 {username.strip()} を追加しました")

    @app.post("/admin/users/{username}/{action}", include_in_schema=False)
    async def toggle_user(request: Request, username: str, action: str, csrf_token: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        if action not in ("disable", "enable"):
            raise HTTPException(404, "not found")
        if username == user.username and action == "disable":
            return _back(request, error="自分自身は無効にできません")
        try:
            await db.update_user(username, f"web:{user.username}", disabled=action == "disable")
        except KeyError:
            raise HTTPException(404, "no such user") from None
        return _back(request, done=f"{username} を{'無効' if action == 'disable' else '有効'}にしました")

    @app.get("/admin/address-book.csv", include_in_schema=False)
    async def export(request: Request, encoding: str = "utf-8"):
        await admin(request)
        if encoding not in ("utf-8", "cp932"):
            raise HTTPException(400, "encoding must be utf-8 or cp932")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["名前", "電子メール アドレス", "会社", "会社 FAX", "メモ"])
        book = policies.current.address_book
        rows = [[e.name, e.address, e.organisation, "", e.note] for e in book.email]
        rows += [["", "@" + d.domain, d.organisation, "", d.note] for d in book.domain]
        rows += [[f.name, "", f.organisation, fax_display(f.number), f.note] for f in book.fax]
        writer.writerows([csv_cell(cell or "") for cell in row] for row in rows)
        data = out.getvalue().encode("utf-8-sig" if encoding == "utf-8" else "cp932", "replace")
        return Response(data, media_type=f"text/csv; charset={'utf-8' if encoding == 'utf-8' else 'shift_jis'}",
                        headers={"Content-Disposition": 'attachment; filename="address_book.csv"'})

    @app.post("/admin/ledger", include_in_schema=False)
    async def ledger_person(request: Request, person: str = Form(""), csrf_token: str = Form("")):
        """One person's rows of the ledger (a disclosure request, 第33条第5項), for admins. A POST: the
        name never sits in a URL (proxy logs, browser history)."""
        if not csrf_ok(request, csrf_token):
            raise HTTPException(403, "CSRF token missing or wrong")
        user = await admin(request)
        rows = await db.ledger(person=person) if person.strip() else []
        await db.record_admin("ledger_viewed", f"web:{user.username}", {"rows": len(rows)})
        return page(request, "ledger.html", user, person=person, header=HEADER, rows=table(rows, zone))

    @app.get("/admin/ledger.csv", include_in_schema=False)
    async def ledger_export(request: Request, person: str = "", encoding: str = "utf-8"):
        """The provision ledger (第三者提供記録) with 本人, for admins only; ``person``: one person's rows."""
        user = await admin(request)
        if encoding not in ("utf-8", "cp932"):
            raise HTTPException(400, "encoding must be utf-8 or cp932")
        rows = await db.ledger(person=person or None)
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(
            [HEADER, *([csv_cell(cell) for cell in row] for row in table(rows, zone))])
        await db.record_admin("ledger_exported", f"web:{user.username}", {"person": bool(person), "rows": len(rows)})
        data = out.getvalue().encode("utf-8-sig" if encoding == "utf-8" else "cp932", "replace")
        return Response(data, media_type=f"text/csv; charset={'utf-8' if encoding == 'utf-8' else 'shift_jis'}",
                        headers={"Content-Disposition": 'attachment; filename="provision_ledger.csv"'})

    @app.post("/admin/address-book/import", include_in_schema=False)
    async def import_csv(request: Request, file: UploadFile, csrf_token: str = Form("")):
        check(request, csrf_token)
        user = await admin(request)
        try:
            rows = parse_contacts(await file.read())
        except ValueError as exc:
            return _back(request, error=f"{file.filename}: {exc}")

        counts = {"added": 0, "updated": 0, "skipped": 0}

        def edit(document):
            counts.update(merge_contacts(document, rows))

        error = await change(user, {"action": "import", "file": file.filename, "entries": len(rows)}, edit)
        done = "" if error else (f"取り込みました: 追加 {counts['added']} 件、更新 {counts['updated']} 件、"
                                 f"変更なし {counts['skipped']} 件")
        return _back(request, done=done, error=error or "")


def _entry_key(kind: str, entry) -> str:
    """Which address-book entry a row is: the same address, domain or FAX number however written."""
    value = str(entry.get({"email": "address", "domain": "domain", "fax": "number"}[kind], ""))
    if kind == "fax":
        try:
            return fax_e164(value)
        except ValueError:
            return value
    return address_key(value) if kind == "email" else value.lower().rstrip(".")


def merge_contacts(document, rows: list[tuple[str, dict]]) -> dict[str, int]:
    """Add new entries, update the organisation and name of those already in the book (keeping
    their other keys and the admin's comments), and count what was skipped as unchanged."""
    counts = {"added": 0, "updated": 0, "skipped": 0}
    for kind, entry in rows:
        entry = dict(entry)
        stand_ins = entry.pop(PLACEHOLDER, [])
        if kind not in document:
            document[kind] = tomlkit.aot()
        existing = {_entry_key(kind, e): e for e in document[kind]}
        found = existing.get(_entry_key(kind, entry))
        if found is None:
            document[kind].append(entry)
            counts["added"] += 1
            continue
        key_field = {"email": "address", "domain": "domain", "fax": "number"}[kind]   # kept as the admin wrote it
        changed = {k: v for k, v in entry.items()
                   if k != key_field and k not in stand_ins and str(found.get(k, "")) != v}
        for key, value in changed.items():
            found[key] = value
        counts["updated" if changed else "skipped"] += 1
    return counts


def parse_contacts(data: bytes) -> list[tuple[str, dict]]:
    """Entries from an Outlook-style contact CSV (UTF-8 with or without BOM, or CP932).

    Raises ValueError (Japanese) for an unreadable file or one without an address column.
    """
    text = decode_csv(data)
    if text is None:
        raise ValueError("UTF-8 でも Shift_JIS (CP932) でもありません")
    reader = csv.DictReader(io.StringIO(text))
    columns = {field: next((c for c in names if c in (reader.fieldnames or [])), None)
               for field, names in OUTLOOK_COLUMNS.items()}
    if not columns["address"] and not columns["fax"]:
        raise ValueError("「電子メール アドレス」(E-mail Address) の列がありません")
    entries = []
    for row in reader:
        cell = {field: unicodedata.normalize("NFKC", from_csv_cell(row.get(column) or "")).strip() if column else ""
                for field, column in columns.items()}
        name = cell["name"] or " ".join(p for p in (cell["surname"], cell["given"]) if p)
        organisation = cell["organisation"]
        address = cell["address"]
        # Without a company column, a stand-in organisation is written for a new entry only (PLACEHOLDER):
        # it must never overwrite the name an admin gave an entry already in the book.
        if address.startswith("@"):
            entries.append(("domain", _placeholder({"domain": address[1:], "organisation": organisation},
                                                   organisation=address[1:])))
        elif address:
            entry = {"address": address, "organisation": organisation}
            if name:
                entry["name"] = name
            entries.append(("email", _placeholder(entry, organisation=address.rpartition("@")[2])))
        if cell["fax"]:
            entries.append(("fax", _placeholder({"number": cell["fax"], "organisation": organisation},
                                                organisation=name or cell["fax"])))
    return entries


PLACEHOLDER = "__placeholders__"


def _placeholder(entry: dict, **stand_ins: str) -> dict:
    """``entry`` with each empty field filled by its stand-in, remembering which were filled."""
    filled = [k for k, v in stand_ins.items() if not entry.get(k)]
    for key in filled:
        entry[key] = stand_ins[key]
    if filled:
        entry[PLACEHOLDER] = filled
    return entry


def _back(request: Request, done: str = "", error: str = "") -> RedirectResponse:
    """Back to /admin with the outcome kept in the session, never in the URL (where a
    crafted link could put any text on an admin's page)."""
    request.session["flash"] = {"done": done, "error": error}
    return RedirectResponse("/admin", status_code=303)


def _context(policies: PolicyWatcher, store: Store, q: str) -> dict:
    book = policies.current.address_book
    needle = unicodedata.normalize("NFKC", q).lower().strip()

    def matches(*fields: str) -> bool:
        return not needle or any(needle in unicodedata.normalize("NFKC", f or "").lower() for f in fields)

    return {
        "q": q,
        "emails": [(i, e) for i, e in enumerate(book.email) if matches(e.address, e.organisation, e.name, e.note)],
        "domains": [(i, d) for i, d in enumerate(book.domain) if matches(d.domain, d.organisation, d.note)],
        "faxes": [(i, f, fax_display(f.number)) for i, f in enumerate(book.fax)
                  if matches(f.number, fax_display(f.number), f.organisation, f.name, f.note)],
        "users": store.list_users(),
        "policy": policies.current,
        "policy_errors": policies.errors,
        "policy_dir": str(policies.directory),
    }
