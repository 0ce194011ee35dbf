"""Is an encoded image whole? A check of JPEG and PNG bytes that does not depend on the decoder.

OpenCV 5 refuses a JPEG cut short, but OpenCV 4 decodes it with the missing rows grey (libjpeg
only warns), so a truncated photo would be stored and trained on. The builders call
:func:`incomplete` before decoding: a JPEG must have its end-of-image marker after its last scan,
a PNG its ``IEND`` chunk.
"""

from __future__ import annotations

from typing import Optional

JPEG_START = b"\xff\xd8"
JPEG_SCAN = b"\xff\xda"  # start of scan; inside a scan 0xff is always followed by 0x00 or a restart marker
JPEG_END = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def incomplete(data: bytes) -> Optional[str]:
  """Why ``data`` (a JPEG or PNG file's bytes) is cut short, or None (whole, or another format).

  A JPEG is whole when an end-of-image marker follows its last start-of-scan marker (an EXIF
  thumbnail's markers come before the main image's scans; bytes after the end marker are
  allowed); a PNG when it has an ``IEND`` chunk.
  """
  if data[:2] == JPEG_START:
    scan = data.rfind(JPEG_SCAN)
    if scan < 0:
      return "a JPEG without image data (no start-of-scan marker): cut short or corrupt"
    if data.find(JPEG_END, scan + 2) < 0:
      return "a truncated JPEG (no end-of-image marker after its last scan)"
  elif data[:8] == PNG_SIGNATURE and data.rfind(b"IEND") < 0:
    return "a truncated PNG (no IEND chunk)"
  return None
