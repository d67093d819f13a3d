"""Edit a policy file as an admin would: comments kept, whole policy validated first.

The written file keeps the mode the admin gave it (an address book with agreed
keys stays 0600); a new file is created 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from .load import PolicyError, load
from .roster import ROSTER_FILE


def update_file(directory: Path, name: str, change: Callable[[Any], None]) -> None:
    """Change one policy file the way an admin would: comments and layout kept (tomlkit),
    the whole policy validated with the change before anything is written, then an
    atomic replace (the running relay picks it up like a hand edit).

    Raises PolicyError (naming the real file) when the change would break the policy.
    """
    import tomlkit

    path = directory / name
    with _locked(directory):   # two editors (console, another process) never interleave read and write
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
        change(document)
        text = tomlkit.dumps(document)
        _validate(directory, name, text)
        _write(path, text)


@contextlib.contextmanager
def _locked(directory: Path):
    """An exclusive lock on the policy directory itself (flock; no lock file to leave behind)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


def _validate(directory: Path, name: str, text: str) -> None:
    """The whole policy as it would be with ``text`` in ``name``. Raises PolicyError naming the real file."""
    with tempfile.TemporaryDirectory() as scratch:
        for existing in [*directory.glob("*.toml"), *directory.glob(ROSTER_FILE)]:
            shutil.copy2(existing, scratch)
        Path(scratch, name).write_text(text, encoding="utf-8")
        try:
            load(Path(scratch))
        except PolicyError as exc:
            raise PolicyError([p.replace(scratch, str(directory)) for p in exc.problems]) from None


def _write(path: Path, text: str) -> None:
    """Atomic replace (temporary file, fsync, rename) keeping the file's mode; a new file is 0600."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")   # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, mode)   # the mode the admin gave the file, not the umask's
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
