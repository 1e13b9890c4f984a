"""updatedb (locate's nightly walk of every filesystem) must not walk OSS mounts: each walk costs a LIST per
directory and a HEAD per file, billed by OSS. `PRUNEFS` in /etc/updatedb.conf names filesystem types it skips
(updatedb.conf(5): a whitespace-separated list inside double quotes, matched case-insensitively).

`with_fstype_pruned` is sans-IO; `prune_updatedb` edits a file in place (atomically, mode kept) and
`updatedb_prunes` reports whether it already skips ossmount mounts.
"""

from __future__ import annotations

import os
import re
import tempfile

UPDATEDB_CONF = "/etc/updatedb.conf"
FSTYPE = "fuse.ossmount"
_PRUNEFS = re.compile(r'^(?P<head>\s*PRUNEFS\s*=\s*")(?P<value>[^"]*)(?P<tail>".*)$')


def pruned_types(text: str) -> list[str] | None:
    """The file system types of the (last) PRUNEFS line, or None when there is none."""
    found = None
    for line in text.splitlines():
        match = _PRUNEFS.match(line)
        if match:
            found = match["value"].split()
    return found


def with_fstype_pruned(text: str, fstype: str = FSTYPE) -> str:
    """`text` with `fstype` in PRUNEFS: appended to the last PRUNEFS line, or a PRUNEFS line added at the end.
    Unchanged when it is already there (whatever its case); every other line is kept as it is."""
    types = pruned_types(text)
    if types is not None and fstype.lower() in (t.lower() for t in types):
        return text
    lines = text.splitlines(keepends=True)
    if types is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + f'PRUNEFS="{fstype}"\n'
    index = max(i for i, line in enumerate(lines) if _PRUNEFS.match(line.rstrip("\r\n")))
    line = lines[index]
    ending = line[len(line.rstrip("\r\n")):]
    match = _PRUNEFS.match(line.rstrip("\r\n"))
    value = match["value"].rstrip()
    lines[index] = f"{match['head']}{value + ' ' if value else ''}{fstype}{match['tail']}{ending}"
    return "".join(lines)


def updatedb_prunes(path: str = UPDATEDB_CONF) -> bool | None:
    """True when `path` prunes fuse.ossmount, False when it does not, None when there is no such file."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            types = pruned_types(handle.read())
    except FileNotFoundError:
        return None
    return types is not None and FSTYPE in (t.lower() for t in types)


def prune_updatedb(path: str = UPDATEDB_CONF) -> bool:
    """Add fuse.ossmount to PRUNEFS in `path`; True if the file changed. FileNotFoundError when it does not
    exist (no locate installed: nothing walks the mounts)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    changed = with_fstype_pruned(text)
    if changed == text:
        return False
    info = os.stat(path)
    fd, temporary = tempfile.mkstemp(prefix=".updatedb.conf.", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(changed)
        os.chmod(temporary, info.st_mode & 0o7777)
        try:
            os.chown(temporary, info.st_uid, info.st_gid)
        except PermissionError:
            pass
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return True
