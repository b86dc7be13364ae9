"""What a file is: the formats read, the error every refusal raises, and content sniffing.

Sniffing is only for messages (`describe_unreadable` says "this is a PDF, not an
image"); the decision to decode is always Pillow's.
"""

from __future__ import annotations

# Pillow format ids we decode. Keeping the list short keeps rarely fuzzed decoders
# (and the loose header checks of formats like TGA) away from user uploads.
# "JPEG" also opens multi-picture JPEGs (MPO) from phones and cameras.
READ_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)
SUPPORTED_FORMATS_TEXT = "a JPEG, PNG, WebP, BMP, TIFF or GIF"


class ImageError(ValueError):
    """A file or array that cannot be inspected; the message says why and what to do."""


# ----------------------------------------------------------------- what a file looks like

# (magic bytes, offset, what it is, category). Categories: "readable" (one of
# READ_FORMATS: a failure means a damaged file), "image" (an image format we do not
# read), "other" (not an image at all).
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "a JPEG", "readable"),
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG", "readable"),
    (b"GIF87a", 0, "a GIF", "readable"),
    (b"GIF89a", 0, "a GIF", "readable"),
    (b"II*\x00", 0, "a TIFF", "readable"),
    (b"MM\x00*", 0, "a TIFF", "readable"),
    (b"II+\x00", 0, "a BigTIFF", "image"),
    (b"8BPS", 0, "a Photoshop (PSD)", "image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL", "image"),
    (b"\xff\x0a", 0, "a JPEG XL", "image"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000", "image"),
    (b"\x76\x2f\x31\x01", 0, "an OpenEXR", "image"),
    (b"qoif", 0, "a QOI", "image"),
    (b"%PDF", 0, "a PDF document", "other"),
    (b"PK\x03\x04", 0, "a ZIP archive or an Office document", "other"),
    (b"PK\x05\x06", 0, "an empty ZIP archive", "other"),
    (b"\x1f\x8b", 0, "a gzip archive", "other"),
    (b"Rar!\x1a\x07", 0, "a RAR archive", "other"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive", "other"),
    (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM video", "other"),
    (b"OggS", 0, "an Ogg audio or video file", "other"),
    (b"ID3", 0, "an MP3 audio file", "other"),
    (b"fLaC", 0, "a FLAC audio file", "other"),
    (b"\x7fELF", 0, "a Linux program", "other"),
    (b"SQLite format 3\x00", 0, "an SQLite database", "other"),
)
_FTYP_IMAGE_BRANDS = {
    b"heic": "a HEIC", b"heix": "a HEIC", b"hevc": "a HEIC", b"heim": "a HEIC", b"heis": "a HEIC",
    b"mif1": "a HEIF", b"msf1": "a HEIF", b"avif": "an AVIF", b"avis": "an AVIF",
}
_RIFF_KINDS = {
    b"WEBP": ("a WebP", "readable"), b"AVI ": ("an AVI video", "other"), b"WAVE": ("a WAV audio file", "other"),
}


def sniff_content(data: bytes) -> tuple[str | None, str | None]:
    """Guess what bytes are from their first bytes: (description, category).

    Only for error messages: the decision to decode is Pillow's. Categories:
    "readable", "image", "other" (see `_SIGNATURES`), or (None, None) when unknown.
    """
    head = data[:2048]
    for magic, offset, what, category in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what, category
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return (_FTYP_IMAGE_BRANDS[brand], "image") if brand in _FTYP_IMAGE_BRANDS else ("an MP4/MOV video", "other")
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    if head[:2] == b"BM":  # checked after text: "BM" is a weak, two-letter magic
        return "a BMP", "readable"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return "an icon (ICO/CUR)", "image"
    if head[:2] == b"MZ":
        return "a Windows program", "other"
    return None, None


def _as_text(head: bytes) -> str | None:
    """The head as text when it reads like text (UTF-8 or ASCII, few control characters)."""
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end
            return None
        text = head[: error.start].decode("utf-8")
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f")
    return text if controls <= len(text) * 0.02 else None


def _describe_text(text: str) -> tuple[str, str]:
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in start[:1024]:
        return "an HTML page, such as a saved web page or a download's error page", "other"
    if "<svg" in start[:1024]:
        return "an SVG drawing", "image"
    if start.startswith("<?xml"):
        return "an XML document", "other"
    if start.startswith(("{", "[")):
        return "JSON text", "other"
    return "plain text", "other"


def describe_unreadable(data: bytes, label: str) -> str:
    """The message for content that Pillow could not identify, by what it looks like."""
    what, category = sniff_content(data)
    if category == "readable":
        return f"{label} starts like {what} but cannot be read (damaged header); re-export or re-download it"
    if category == "image":
        return f"{label} is {what} image, which is not supported; convert it to {SUPPORTED_FORMATS_TEXT[2:]}"
    if category == "other":
        return f"{label} is not an image (it looks like {what}); upload {SUPPORTED_FORMATS_TEXT}"
    return (
        f"{label} is not an image this tool can read (it starts with bytes {data[:8].hex(' ')}); "
        f"upload {SUPPORTED_FORMATS_TEXT}"
    )
