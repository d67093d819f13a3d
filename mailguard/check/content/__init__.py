"""content: personal and sensitive data in bodies and attachments.

Receives the raw message (bytes) and the roster; hands on a ``ContentReport``:
a level (none / personal / sensitive) for the message and for each top-level
part, known by its MIME part path (``mime``), the detections (masked), and every
part that could not be fully read (``Unscannable``, a Japanese reason).

- ``mime``: part paths and attachment names, shared with ``check.transform``;
- ``extract``: text of every part (bodies, CSV, HTML, zip, forwarded mail); a part that
  cannot be fully read is unscannable, the others are still inspected;
- ``charsets``: the declared charset, then UTF-8, then a guess (charset-normalizer);
  both readings are inspected when two are plausible (a stray byte must not hide a My Number);
- ``zipsafe``: a zip reader that never trusts declared sizes or CRCs (streams each member
  under its own byte cap; used for .zip and for the members of docx/xlsx/pptx);
- ``formats``: PDF (pypdfium2, pdfminer.six) and Office (python-docx, openpyxl, xlrd, python-pptx);
- ``detect``: detectors in the style of Presidio (個人番号 check digit: 総務省令第85号 第5条);
- ``report``: classification per part (個人情報保護法 第2条第3項, 手引き 2-1) and findings;
- ``pool``: runs ``report.scan`` in worker processes bounded in time and memory.

Settings: MAILGUARD_INSPECT_TIMEOUT, _MAX_MEMORY, _MAX_TEXT_BYTES,
_MAX_ARCHIVE_ENTRIES, _MAX_COMPRESSION_RATIO, _MAX_DEPTH, _WORKERS.
On failure: whatever could not be read is ``unscannable`` (held for a person); nothing raises.
"""
