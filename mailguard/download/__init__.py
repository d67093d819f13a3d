"""download: the pages a recipient of link delivery opens, on a listener of their own.

Receives HTTP requests on MAILGUARD_DOWNLOAD_LISTEN (the only listener meant for
the internet: no console route answers here) and hands out the files of one link
(``store.links``), decrypted with the secret in the link and the passcode typed in
(``vault``). Standards: RFC 9110 (GET is safe: opening a link, as mail scanners
such as Safe Links do, changes nothing but the access record; the download is a
POST from the page), RFC 6266 (``Content-Disposition: attachment`` with a UTF-8
``filename*``), RFC 6797 (HSTS over TLS), the console's CSP and headers.
Settings: MAILGUARD_DOWNLOAD_LISTEN / _URL, MAILGUARD_TLS_CERT / _KEY,
MAILGUARD_LINK_LIFETIME / _MAX_DOWNLOADS / _MAX_PASSCODE_FAILURES.
On failure: an unknown link or a wrong secret is a Japanese 404 (nothing says
whether the link exists); a closed, expired or used-up link a Japanese 410; a wrong
passcode a 403 with the tries left; the last allowed failure locks the link and
tells the sender. Every view, failure and download is in the send log.
"""
