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
- Never trusted: the declared size or resolution of an image or page. A frame over
  ``MAX_PIXELS`` is not decoded; a resolution ratio outside 1:2.5 is ignored; a page is
  rendered at most ``MAX_PIXELS``, and one whose print would then be under ``MIN_DPI`` is
  refused; an image larger than the engine reads at once is read in overlapping tiles.
- Bounds (``OcrBudget``): MAILGUARD_OCR_MAX_PAGES pages and MAILGUARD_OCR_TIMEOUT seconds per
  message; what is past them is unscannable. The pool's hard time limit still kills a worker
  stuck inside the engine (``pool``).
- Confidence: a page where more than ``LOW_SHARE`` of the characters were read with a score
  under ``LOW_SCORE``, or where nothing was read but the page has ink on it, is not
  confidently read: unscannable, with the page.
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
MIN_DPI = 100              # a page that can only be rendered coarser than this cannot be read
MAX_TILES = 16             # tiles of one image; a larger one is not read
INK = 0.002                # share of dark pixels above which a page with no text read is not blank
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


_SCANS = re.compile(rb"image/|application/(?:pdf|zip|x-zip|octet-stream)|\.(?:pdf|tiff?|png|jpe?g|zip)\b", re.I)


def may_hold_scans(raw: bytes) -> bool:
    """Whether a raw message may hold something OCR reads (an image, a PDF, or a zip or unnamed
    binary that may hold one): only then does a scan get OCR's time as well."""
    return _SCANS.search(raw) is not None


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
    """FAX standard mode (204×98 dpi) has pixels twice as tall as wide: stretch to square. A
    ratio beyond 1:2.5 is not a FAX but a lie, and is ignored."""
    try:
        xdpi, ydpi = (float(v) for v in (frame.info.get("dpi") or (0, 0)))
    except (TypeError, ValueError):
        xdpi = ydpi = 0.0
    frame = frame.convert("L")
    if xdpi > 0 and ydpi > 0 and 0.4 <= xdpi / ydpi <= 2.5 and abs(xdpi / ydpi - 1) > 0.2:
        height = round(frame.height * xdpi / ydpi)
        if frame.width * height <= MAX_PIXELS:
            frame = frame.resize((frame.width, height))
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
        if scale < MIN_DPI / 72:
            raise ValueError(f"page of {width:.0f}x{height:.0f} pt cannot be rendered at {MIN_DPI} dpi")
        return page.render(scale=scale, grayscale=True).to_pil()
    finally:
        document.close()


def read(image) -> PageText:
    """OCR one image: its lines top to bottom (tile by tile when it is large), folded
    (``fold``), and whether it was confidently read."""
    import numpy

    started = time.monotonic()
    if min(image.size) < MIN_SIDE:
        return PageText("", True, 0.0)
    texts, scores = [], []
    for tile in _tiles(image):
        result = _engine()(numpy.asarray(tile.convert("RGB")))
        texts += list(result.txts or ())
        scores += list(result.scores or ())
    characters = sum(len(t) for t in texts)
    low = sum(len(t) for t, s in zip(texts, scores) if s < LOW_SCORE)
    confident = low <= LOW_SHARE * characters if characters else _ink(image) <= INK
    return PageText(fold("\n".join(texts)), confident, time.monotonic() - started)


def _tiles(image):
    """The image in overlapping bands and columns of at most 1.5 × MAX_SIDE pixels a side, so the
    engine never shrinks a large page below legibility. ValueError past MAX_TILES."""
    size = int(MAX_SIDE * 1.5)
    overlap = 120   # pixels: a line of print cut by one tile is whole in the next
    width, height = image.size
    xs = range(0, max(width - overlap, 1), size - overlap) if width > size else [0]
    ys = range(0, max(height - overlap, 1), size - overlap) if height > size else [0]
    if len(xs) * len(ys) > MAX_TILES:
        raise ValueError(f"image of {width}x{height} pixels needs more than {MAX_TILES} tiles")
    for y in ys:
        for x in xs:
            yield image.crop((x, y, min(x + size, width), min(y + size, height)))


def _ink(image) -> float:
    """Share of dark pixels (a blank page has almost none)."""
    histogram = image.convert("L").histogram()
    return sum(histogram[:128]) / max(sum(histogram), 1)


# Look-alikes OCR confuses. Letters that look like digits, only inside a number: after a digit
# (or a digit and a hyphen), or before one where no letter precedes (NO0123 is a word and a number).
# Kanji that look like katakana (ハ/八, ー/一, ロ/口, カ/力, エ/工, ニ/二, タ/夕, ト/卜), only among
# katakana and never before another kanji (ケアマネ工藤, ケアプラン一覧 stay as they are).
_DIGIT_LIKE = str.maketrans({"O": "0", "o": "0", "〇": "0", "l": "1", "I": "1", "|": "1"})
_IN_NUMBER = re.compile(r"(?:(?<=\d)|(?<=\d-)|(?<![A-Za-z0-9]))[OolI|〇]+(?=-?\d)|(?<=\d)[OolI|〇]+(?=-?\d)")
_KANA_LIKE = str.maketrans({"八": "ハ", "一": "ー", "口": "ロ", "力": "カ", "工": "エ", "二": "ニ", "夕": "タ",
                            "卜": "ト"})
_KANA_RUN = re.compile(r"(?<=[ァ-ヺー])[八一口力工二夕卜]+(?=[ァ-ヺー])"
                       r"|(?<![一-龥々])[八一口力工二夕卜]+(?=[ァ-ヺ])|卜(?=[ァ-ヺ])")   # 卜 is all but unused


# The recognition model also reads Chinese: where it gives a simplified or traditional form of a
# character, the Japanese form (後期高齡者 → 齢, 脑梗塞 → 脳, 遗症 → 遺, 样 → 様 …), so the context
# words and the vocabulary match.
_JAPANESE_FORMS = str.maketrans("齡脑遗样险护证计号码历药疗压痴呆过载认龄齿毕伤肾脏围颈脚属岛营边泽滨广东县桥荣树叶绘纪铃",
                                "齢脳遺様険護証計号碼歴薬療圧痴呆過載認齢歯畢傷腎臓囲頸脚属島営辺沢浜広東県橋栄樹葉絵紀鈴")


def fold(text: str) -> str:
    """OCR text with look-alikes folded (see above): 14OOO12345 → 1400012345, 佐々木 八ル → 佐々木 ハル."""
    text = _IN_NUMBER.sub(lambda m: m.group(0).translate(_DIGIT_LIKE), text).translate(_JAPANESE_FORMS)
    return _KANA_RUN.sub(lambda m: m.group(0).translate(_KANA_LIKE), text)
