"""ocr: the text of scans — image attachments, FAX TIFFs and PDF pages without a text layer.

Receives ``pdf.Scan`` pages (a PDF page, or one frame of an image file) and an ``OcrBudget``;
hands back, per page, the text read (look-alike characters folded, see ``fold``) and whether it
was read confidently. Engine: RapidOCR (PP-OCRv6 small detection and recognition models inside
the ``rapidocr`` wheel, run by onnxruntime, one thread per worker): measured here on generated
居宅サービス計画書 pages it read all 8 fields at 200 and 300 dpi and on fine-mode FAX, about
2–3 s a page, where Tesseract ``jpn`` misread digits (0→9) that check digits then refuse.
An optional extra (``pip install 'mailguard[ocr]'``): without it, scans stay unscannable.

- Images: TIFF (every frame; FAX TIFF-F at 204×98 dpi is stretched to square pixels), PNG,
  JPEG, GIF, BMP, WebP, opened with Pillow; PDF pages rendered with PDFium at ``DPI``.
- Never trusted: the declared size of an image or page. A frame over ``MAX_PIXELS`` is not
  decoded; a page is rendered at most ``MAX_PIXELS``.
- Bounds (``OcrBudget``): MAILGUARD_OCR_MAX_PAGES pages and MAILGUARD_OCR_TIMEOUT seconds per
  message; what is past them is unscannable. The pool's hard time limit still kills a worker
  stuck inside the engine (``pool``).
- Confidence: a page where more than ``LOW_SHARE`` of the characters were read with a score
  under ``LOW_SCORE`` is not confidently read: unscannable, with the page.
CPU-bound: runs only in the scan workers (``pool``), never on the event loop.
"""

from __future__ import annotations

import functools
import io
import re
import time
from dataclasses import dataclass

DPI = 200                  # rendering of PDF pages: 200 dpi read as well as 300 here, in 2/3 of the time
MAX_PIXELS = 40_000_000    # an A3 page at 400 dpi is 31 MP; past this an image is a construction
MIN_SIDE = 16              # pixels: smaller is an icon, not a document
LOW_SCORE, LOW_SHARE = 0.75, 0.3
# The engine reads pages scaled to at most this many pixels a side: A4 at 300 dpi read all fields at
# 1280 and 1600 here; 1600 keeps 8-point print legible. About 1.1-1.4 GiB of address space a worker.
MAX_SIDE = 1600


@dataclass
class OcrBudget:
    """Pages and seconds left for OCR in one message (MAILGUARD_OCR_MAX_PAGES, _OCR_TIMEOUT)."""

    pages: int
    seconds: float
    started: float = 0.0

    def take(self) -> str | None:
        """None when one more page may be read; else the Japanese reason it may not."""
        if not self.started:
            self.started = time.monotonic()
        if self.pages <= 0:
            return "画像の文字読み取り (OCR) のページ数の上限を超えました"
        if time.monotonic() - self.started > self.seconds:
            return "画像の文字読み取り (OCR) の制限時間を超えました"
        self.pages -= 1
        return None


@dataclass(frozen=True)
class PageText:
    text: str
    confident: bool
    seconds: float


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the OCR extra is installed (looked up, not imported: the relay's own process never loads it)."""
    from importlib.util import find_spec

    return find_spec("rapidocr") is not None and find_spec("onnxruntime") is not None


@functools.lru_cache(maxsize=1)
def _engine():
    from rapidocr import RapidOCR

    return RapidOCR(params={"Global.log_level": "error", "Global.max_side_len": MAX_SIDE,
                            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                            "EngineConfig.onnxruntime.inter_op_num_threads": 1})


def frames(data: bytes):
    """The pages of an image file (every TIFF frame), as Pillow images in square pixels."""
    from PIL import Image, ImageSequence

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS   # Pillow refuses larger before decoding
    image = Image.open(io.BytesIO(data))
    for frame in ImageSequence.Iterator(image):
        width, height = frame.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"image frame of {width}x{height} pixels")
        yield _square(frame)


def _square(frame):
    """FAX standard mode (204×98 dpi) has pixels twice as tall as wide: stretch to square."""
    xdpi, ydpi = (float(v) for v in (frame.info.get("dpi") or (0, 0)))
    frame = frame.convert("L")
    if xdpi and ydpi and abs(xdpi / ydpi - 1) > 0.2:
        frame = frame.resize((frame.width, round(frame.height * xdpi / ydpi)))
    return frame


def render(pdf: bytes, index: int):
    """Page ``index`` of a PDF as a greyscale image at ``DPI``, at most ``MAX_PIXELS``."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        page = document[index]
        width, height = page.get_size()   # points: declared by the file, so capped below
        scale = DPI / 72
        if width * height * scale * scale > MAX_PIXELS:
            scale = (MAX_PIXELS / max(width * height, 1.0)) ** 0.5
        return page.render(scale=scale, grayscale=True).to_pil()
    finally:
        document.close()


def read(image) -> PageText:
    """OCR one image: its lines top to bottom, folded (``fold``), and whether confidently read."""
    import numpy

    started = time.monotonic()
    if min(image.size) < MIN_SIDE:
        return PageText("", True, 0.0)
    result = _engine()(numpy.asarray(image.convert("RGB")))
    texts, scores = list(result.txts or ()), list(result.scores or ())
    characters = sum(len(t) for t in texts)
    low = sum(len(t) for t, s in zip(texts, scores) if s < LOW_SCORE)
    confident = characters == 0 or low <= LOW_SHARE * characters
    return PageText(fold("\n".join(texts)), confident, time.monotonic() - started)


# Look-alikes OCR confuses. In a run of digits: letters that look like digits. Next to katakana:
# kanji that look like katakana (ハ/八, ー/一, ロ/口, カ/力, エ/工, ニ/二, タ/夕, ト/卜).
_DIGIT_LIKE = str.maketrans({"O": "0", "o": "0", "〇": "0", "l": "1", "I": "1", "|": "1"})
_DIGIT_RUN = re.compile(r"[0-9OolI|〇](?:[0-9OolI|〇\-]*[0-9OolI|〇])?")
_KANA_LIKE = str.maketrans({"八": "ハ", "一": "ー", "口": "ロ", "力": "カ", "工": "エ", "二": "ニ", "夕": "タ",
                            "卜": "ト"})
_KANA_RUN = re.compile(r"(?<=[ァ-ヺ])[八一口力工二夕卜]+|[八一口力工二夕卜]+(?=[ァ-ヺー])")


def fold(text: str) -> str:
    """OCR text with look-alikes folded: in a run that is mostly digits (at least 4 of them)
    letters become the digits they look like; kanji look-alikes beside katakana become katakana."""
    def digits(match: re.Match) -> str:
        run = match.group(0)
        return run.translate(_DIGIT_LIKE) if sum(c.isdigit() for c in run) >= 4 else run

    text = _DIGIT_RUN.sub(digits, text)
    return _KANA_RUN.sub(lambda m: m.group(0).translate(_KANA_LIKE), text)
