"""Removing variables from this process's environment for good (Linux).

A process's environment lives in three places, and each must lose a secret:
  1. `os.environ`, Python's copy, which `subprocess` hands to children by default;
  2. libc's `environ` array, which `getenv` reads and `fork`/`exec` from C code (libfuse starting fusermount3)
     pass on: `del os.environ[NAME]` calls `unsetenv`, which removes the pointer;
  3. the block the kernel copied at `execve`, on the top of the main thread's stack. `/proc/PID/environ` (and
     `ps e`) show that block, whatever (1) and (2) say, for the life of the process. Its bounds are fields 50-51
     (`env_start`, `env_end`) of `/proc/self/stat` (proc(5)); the entries of the removed names are overwritten
     with NUL bytes in place. After (2) nothing points at them any more, so no reader sees a torn string.

`forget(names)` does all three and is idempotent.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Iterable

log = logging.getLogger(__name__)

_ENV_START_FIELD = 50  # 1-based field numbers of /proc/PID/stat (proc(5))
_ENV_END_FIELD = 51


def environment_block_bounds(stat_text: str) -> tuple[int, int]:
    """(env_start, env_end) from the text of /proc/PID/stat. The command name (field 2) is in parentheses and may
    hold spaces or parentheses itself, so fields are counted after its last ')'. ValueError if absent."""
    rest = stat_text[stat_text.rindex(")") + 2:].split()
    first = 3  # `rest` starts at field 3 (state)
    return int(rest[_ENV_START_FIELD - first]), int(rest[_ENV_END_FIELD - first])


def entries_to_wipe(block: bytes, names: Iterable[str]) -> list[tuple[int, int]]:
    """(offset, length) of every `NAME=value` entry of `names` in an environment block (NUL-separated)."""
    prefixes = tuple(os.fsencode(name) + b"=" for name in names)
    found = []
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefixes):
            found.append((offset, len(entry)))
        offset += len(entry) + 1
    return found


def forget(names: Iterable[str]) -> int:
    """Remove `names` from os.environ, from libc's environ and from the initial environment block; returns how
    many entries of the block were wiped. A block that cannot be located (no /proc) is logged and left."""
    names = list(names)
    for name in names:
        os.environ.pop(name, None)
    try:
        with open("/proc/self/stat") as stat_file:
            start, end = environment_block_bounds(stat_file.read())
    except (OSError, ValueError, IndexError) as exc:
        log.info("cannot locate this process's environment block (%s); /proc/%d/environ may still show %s",
                 exc, os.getpid(), ", ".join(names))
        return 0
    if end <= start:
        return 0
    block = ctypes.string_at(start, end - start)
    wiped = entries_to_wipe(block, names)
    for offset, length in wiped:
        ctypes.memset(start + offset, 0, length)
    return len(wiped)
