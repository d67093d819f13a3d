"""mailguard: an outbound mail and FAX misdelivery guard for Japanese care offices.

The message's way, one package per stage; the store is the only contract between them
(as Postfix's queue is between smtpd, cleanup, qmgr and smtp):

    smtpd → check (route → recipients → content → decide → transform) → qmgr → smtp
    (receive)  (``check.pipeline.assess``)                              (queue) (deliver)
                          notices (held, approved, password, DSN) · store.sendlog (record)

Layers, lowest first; nothing imports a layer above its own or a stage beside it
(``tests/test_architecture.py``):

    model, text → findings, address, settings → store, policy, users, tokens
    → notices, smtp, smtpd → check → qmgr → console, scan → serve → cli

``console`` (web) and ``cli`` act on messages through ``qmgr.actions`` (one rule book)
and never load the pipeline.
"""

__version__ = "0.1.0"
