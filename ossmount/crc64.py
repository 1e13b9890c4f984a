"""CRC-64/XZ (OSS's `x-oss-hash-crc64ecma`) and combining the CRCs of concatenated pieces.

OSS reports the CRC-64/ECMA-182 of an object in its reflected, all-ones-init, all-ones-xorout form, which
is the CRC-64/XZ catalogue entry. fastcrc computes it at memory speed but has no `combine`, so combining
is done here in GF(2) polynomial arithmetic (the method of zlib's crc32_combine_op, for the reflected
ECMA-182 polynomial), O(log n) in the second length. This lets the client check a multipart object's CRC
from its part CRCs, and the server stitch extents (CompleteMultipartUpload, AppendObject), without
re-reading data. Both sides use this one module.
"""

from __future__ import annotations

from fastcrc import crc64 as _fastcrc64

# Reflected form of the ECMA-182 polynomial 0x42F0E1EBA9EA3693.
_POLY_REFLECTED = 0xC96C5795D7870F42
_TOP_BIT = 1 << 63


def crc64(data: bytes | bytearray | memoryview, initial: int | None = None) -> int:
    """CRC-64/XZ of `data`, continuing from the CRC `initial` of preceding bytes when given."""
    if initial is None:
        return _fastcrc64.xz(data)
    return _fastcrc64.xz(data, initial=initial)


def crc64_file(path: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20) -> int:
    """CRC-64/XZ of `length` bytes of the file at `path` from `offset` (to EOF when length is None)."""
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            chunk = f.read(want)
            if not chunk:
                break
            crc = crc64(chunk, crc)
            if remaining is not None:
                remaining -= len(chunk)
    return crc


def _multiply_mod_poly(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial, both in reflected bit order."""
    mask = _TOP_BIT
    product = 0
    while mask:
        if a & mask:
            product ^= b
            if not a & (mask - 1):
                break
        mask >>= 1
        b = (b >> 1) ^ _POLY_REFLECTED if b & 1 else b >> 1
    return product


def _build_power_table() -> list[int]:
    table = []
    power = _TOP_BIT >> 1  # x^1
    for _ in range(64):
        table.append(power)  # x^(2^n)
        power = _multiply_mod_poly(power, power)
    return table


_X_POW_2N = _build_power_table()


def _x_pow_n_times_2k(n: int, k: int) -> int:
    """x^(n * 2^k) modulo the polynomial."""
    result = _TOP_BIT  # x^0
    while n:
        if n & 1:
            result = _multiply_mod_poly(_X_POW_2N[k & 63], result)
        n >>= 1
        k += 1
    return result


def crc64_combine(crc_first: int, crc_second: int, length_second: int) -> int:
    """CRC of A+B from crc(A), crc(B) and len(B)."""
    if length_second <= 0:
        return crc_first ^ crc_second
    return _multiply_mod_poly(_x_pow_n_times_2k(length_second, 3), crc_first) ^ crc_second


def crc64_concat(pieces: list[tuple[int, int]]) -> int:
    """CRC of the concatenation of pieces given as (crc, length), in order."""
    crc = 0
    for piece_crc, length in pieces:
        crc = crc64_combine(crc, piece_crc, length)
    return crc
