"""`-o use_wtf8`: names that are not valid UTF-8 (e.g. cp1252 from Windows NFS/SMB clients) as valid UTF-8 keys.

OSS keys must be UTF-8. As ossfs/s3fs (`s3fs_wtf8_encode`) do, each byte of a name that is not part of a valid
UTF-8 sequence is stored as the private-use code point U+E000 + byte, and turned back into that byte when the
name is shown. Valid UTF-8 passes unchanged, so buckets written by either client read the same. Like s3fs, a
name that really contains U+E080..U+E0FF is shown as the raw bytes those code points stand for.

Only U+E080..U+E0FF are turned back into bytes: a byte that is not valid UTF-8 is always 0x80 or more, so those
are all the encoding makes. s3fs also turns U+E000..U+E07F back, into ASCII; a key holding U+E02F or U+E000 would
then be shown with a '/' or a NUL in its name, which the kernel refuses for the whole directory (found by
fuzzing). Here such code points stay what they are.
"""

from __future__ import annotations

import codecs

ESCAPE_BASE = 0xE000
_FIRST_ESCAPED = ESCAPE_BASE + 0x80  # the lowest code point the encoding produces
_HANDLER = "ossmount-wtf8"


def _escape_invalid_bytes(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(chr(ESCAPE_BASE + byte) for byte in bad), error.end


codecs.register_error(_HANDLER, _escape_invalid_bytes)


def name_from_kernel(raw: bytes) -> str:
    """A name as the kernel gives it (bytes) -> the key component (valid Unicode)."""
    return raw.decode("utf-8", _HANDLER)


def name_to_kernel(name: str) -> bytes:
    """A key component -> the bytes the kernel shows (escaped bytes restored)."""
    out = bytearray()
    for char in name:
        code = ord(char)
        if _FIRST_ESCAPED <= code <= ESCAPE_BASE + 0xFF:
            out.append(code - ESCAPE_BASE)
        else:
            out += char.encode("utf-8", "surrogateescape")
    return bytes(out)
