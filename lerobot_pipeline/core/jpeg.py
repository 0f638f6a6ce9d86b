"""A cheap structural check of one image file, run on every frame while an episode is read.

It reads only the first and last few bytes: a JPEG starts with the SOI marker ``FF D8 FF`` and ends
with the EOI marker ``FF D9`` (some encoders append a few padding bytes, hence "near the end"). Inside
the entropy-coded data a ``FF`` byte is always followed by ``00`` or a restart marker, so ``FF D9``
near the end really is the end marker. A file that passes may still fail a strict decode (corrupt
data in the middle, a partially decodable image): that is found by the video stage, which decodes
every frame anyway, and passed back through ``read_episode(..., extra_bad=...)``.
"""

from __future__ import annotations

import os
from pathlib import Path

SOI = b"\xff\xd8\xff"
EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND"
TAIL_BYTES = 32  # EOI must lie in the last 32 bytes

ABSENT = "listed in metadata.json but absent"
EMPTY = "zero bytes"
NO_SOI = "not a JPEG: no SOI marker (FF D8) at the start"
NO_EOI = "truncated: no EOI marker (FF D9) at the end"
NO_PNG_SIGNATURE = "not a PNG: no PNG signature at the start"
NO_PNG_END = "truncated: no IEND chunk at the end"


def jpeg_problem(path: str | Path) -> str | None:
    """None for a structurally sound image, else the reason it is a missing frame (absent, empty, truncated...).

    Files named ``*.png`` get the equivalent PNG check (signature, ``IEND`` chunk).
    """
    png = str(path).lower().endswith(".png")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return ABSENT
    except OSError as e:
        return f"cannot be opened ({e.strerror})"
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return EMPTY
        head = os.pread(fd, len(PNG_SIGNATURE) if png else len(SOI), 0)
        tail = os.pread(fd, min(size, TAIL_BYTES), max(0, size - TAIL_BYTES))
    finally:
        os.close(fd)
    if png:
        if head != PNG_SIGNATURE:
            return NO_PNG_SIGNATURE
        return None if PNG_END in tail else NO_PNG_END
    if head != SOI:
        return NO_SOI
    if size < len(SOI) + len(EOI) or EOI not in tail:
        return NO_EOI
    return None
