"""mailguard: an outbound mail and FAX misdelivery guard for Japanese care offices.

The message's way, one module per stage (the store is the contract between them):

    receive → inspect → decide → queue → deliver → record
    (smtpd)  (findings) (verdict) (qmgr)  (smtp)    (send log)

plus ``dsn`` (bounces to the sender), ``policy`` (the files in policies/),
``store`` (SQLite), ``users``, ``settings``, ``serve`` and ``cli``.
"""

__version__ = "0.1.0"
