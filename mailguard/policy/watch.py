"""Keep the policy in force current: re-read the directory when its files change."""

from __future__ import annotations

import logging
from pathlib import Path

from .load import PolicyError, load
from .roster import ROSTER_FILE
from .snapshot import Policy

log = logging.getLogger("mailguard.policy")


def _signature(directory: Path) -> tuple:
    try:
        files = [*directory.glob("*.toml"), *directory.glob(ROSTER_FILE)]
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    except OSError:
        return ()


class PolicyWatcher:
    """Holds the policy in force and re-reads the directory when its files change.

    A broken change is logged (file, line, key, reason) and the previous policy
    stays in force; ``errors`` holds the problems until a good version is read.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.current: Policy = load(directory)   # at start a broken policy is fatal
        self.errors: list[str] = []
        self._signature = _signature(directory)

    def refresh(self) -> bool:
        """Re-read if any file changed. Returns True when a new policy took effect."""
        signature = _signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            policy = load(self.directory)
        except PolicyError as exc:
            self.errors = exc.problems
            for problem in exc.problems:
                log.error("policy not reloaded, previous policy stays in force: %s", problem)
            return False
        self.current, self.errors = policy, []
        log.info("policy reloaded from %s", self.directory)
        return True
