"""store: the queue, the users and the send log in one database: an embedded SQLite file (one
node), or PostgreSQL shared by several nodes (MAILGUARD_DATABASE_URL).

The store is the only contract between the stages (as Postfix's queue is between
smtpd, cleanup, qmgr and smtp): the SMTP front writes accepted messages, the
queue manager moves them from state to state, the CLI and the console act on
them from other processes.

Receives: Submissions (accepted mail, notices, DSNs), verdicts, delivery outcomes,
people's actions. Hands on: QueuedMessages, users, log entries.
Guarantees: a transaction is on disk when a method returns (SQLite: WAL,
``synchronous=FULL``; PostgreSQL: ``synchronous_commit``); write transactions are serialised
(``BEGIN IMMEDIATE``; one advisory lock across all nodes), so every check-then-write is atomic
and the send log is one chain; every state change is a row of ``queue.TRANSITIONS``,
checked and logged in the same transaction; the send log is append-only and
hash-chained (``sendlog``). Files: data directory 0700, database 0600.
On failure: a method raises and its transaction is rolled back; a refused state
change raises ``TransitionError`` with a Japanese message.
Settings read: MAILGUARD_DATABASE_URL (through ``Settings.database``), MAILGUARD_DATA_DIR.
Modules: ``db`` (schema, versions, group commit), ``sqlite`` and ``postgres`` (what differs
between the two), ``queue``, ``leases`` (which node works on what; jobs run once), ``links`` (download
links, their sealed files and access record), ``approvals`` (who was told, escalation,
two approvers), ``ledger`` (the provision record, 第29条, with 本人 in its own table), ``retention``
(raw content purged after MAILGUARD_CONTENT_RETENTION), ``accounts``,
``sendlog``, ``aio`` (the async wrapper the server uses).
"""

from __future__ import annotations

from .accounts import AccountStore
from .approvals import ApprovalStore, Waiting
from .aio import AsyncStore
from .db import Database, private_dir, private_file
from .leases import LeaseStore
from .ledger import BASIS_LABELS, PROTECTION_LABELS, LedgerStore
from .links import CLOSED_LABELS, Link, LinkStore
from .retention import RetentionStore
from .queue import TRANSITIONS, LeaseLost, QueueStore, TransitionError
from .sendlog import LogEntry


class Store(QueueStore, LeaseStore, LinkStore, ApprovalStore, LedgerStore, RetentionStore, AccountStore, Database):
    """Synchronous access to the database at ``path`` (created on first use)."""


__all__ = ["Store", "Waiting", "BASIS_LABELS", "PROTECTION_LABELS", "Link", "CLOSED_LABELS", "AsyncStore", "TransitionError", "LeaseLost", "TRANSITIONS", "LogEntry", "private_dir", "private_file"]
