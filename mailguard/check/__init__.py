"""check: what a message is, what it may do, and what must change before it leaves.

The stages between acceptance and the queue, in order (``pipeline.assess`` runs them):

    route      → each recipient: internal, external e-mail, FAX (``model.Route``)
    recipients → findings about who it goes to (address book, look-alikes, DNS, FAX, exposure)
    content    → findings about what it carries (personal / sensitive data, unreadable parts)
    decide     → the verdict: deliver < delay < approval < reject (``decision.toml``)
    transform  → what leaves: encrypted attachments, hidden To/Cc, FAX gateway addresses

Receives: a stored message (``model.QueuedMessage``), the policy, ``Facts`` the
caller gathered (DNS answers, past recipients) and the content report from the
worker pool. Hands on: an ``Assessment`` the queue manager stores in one
transaction. Nothing here does I/O except ``recipients.domains`` (DNS, asyncio),
``content.pool`` (worker processes) and, through ``notices``, reading the
installation key that signs a held notice's cancel link. Sources: 手引き チェックリスト3-3 3)–5),
事例6; 個人情報保護法 第2条第3項. On failure: the message is held (``pipeline``).
"""
