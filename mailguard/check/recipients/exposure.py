"""Mass-mail exposure: many parties' addresses visible to each other in To:/Cc:.

Putting a family mailing list or several organisations into To: discloses every
address to every recipient (the 2013 incident in shared/seeds 000). Parties are
counted among the external addresses visible in To: and Cc:: a registered
organisation is one party; at a free-mail or mobile domain (``personal_domains``)
every address is a party of its own; otherwise one registrable domain is one
party. Registered partners seeing each other does not count when
``registered_may_see_each_other`` (a care conference is normal work).

Past ``max_visible_external`` addresses or ``max_visible_organisations`` parties:
``mass_mail_exposure`` (held for a manager), or with ``handling = "bcc"``
``mass_mail_rewritten`` (the transform stage hides the addresses).
"""

from __future__ import annotations

from ... import findings as F
from ...address import address_key, registrable_domain
from ...model import Finding
from ...policy import Policy


def _party(address: str, policy: Policy) -> str:
    entry = policy.lookup(address)
    if entry is not None:
        return "org:" + entry.organisation
    key = address_key(address)
    domain = key.rpartition("@")[2]
    if domain in policy.exposure.personal_domains:
        return "person:" + key
    return "domain:" + (registrable_domain(domain) or domain)


def exposure_findings(visible: list[tuple[str, str]], policy: Policy) -> list[Finding]:
    external = sorted({address_key(a) for _, a in visible if a and "@" in a and not policy.is_internal(a)})
    if not external:
        return []
    rules = policy.exposure
    counted = [a for a in external
               if not (rules.registered_may_see_each_other and policy.lookup(a) is not None)]
    parties = {_party(a, policy) for a in counted}
    if len(external) <= rules.max_visible_external and len(parties) <= rules.max_visible_organisations:
        return []
    summary = f"社外の宛先 {len(external)} 件 ({len(parties)} 者) が To/Cc で互いに見える状態です"
    if rules.handling == "bcc":
        return [F.MASS_MAIL_REWRITTEN.finding(f"To/Cc {len(external)}件",
                        f"{summary}。宛先が互いに見えないよう、Bcc に移して送信します。")]
    return [F.MASS_MAIL_EXPOSURE.finding(f"To/Cc {len(external)}件",
                    f"{summary}。一斉送信は Bcc を使ってください。このままでは宛先どうしにアドレスが漏れます。")]
