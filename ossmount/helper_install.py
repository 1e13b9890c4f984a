"""`ossmount install-helper [--prefix /sbin] [--systemd [--unit-dir DIR]] [--prune-updatedb [--updatedb-conf F]]`:
install the mount(8) helper `mount.fuse.ossmount`, or (`--systemd`) the daemon's systemd unit `ossmountd.service`,
or (`--prune-updatedb`) add fuse.ossmount to PRUNEFS in /etc/updatedb.conf (`ossmount.ops.updatedb`).

mount(8) runs `/sbin/mount.fuse.ossmount SPEC DIR [-sfnvrw] [-N NS] -o OPTS` for `mount -t fuse.ossmount`
and for fstab lines of type `fuse.ossmount`. The helper drops the options only mount(8)/systemd care
about and execs `ossmount mount SPEC DIR -o REST`. The command it runs is `$OSSMOUNT` if set, else the
absolute command written at install time (this interpreter, `-m ossmount`), else `ossmount` on PATH.

helpers/mount.fuse.ossmount in the source tree is `render_helper(None)` and helpers/ossmountd.service is
`render_unit(None)`; unit tests keep them equal.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from ossmount.errors import ArgumentParser, ConfigError
from ossmount.ops.updatedb import UPDATEDB_CONF, prune_updatedb

HELPER_NAME = "mount.fuse.ossmount"
DEFAULT_PREFIX = "/sbin"
UNIT_NAME = "ossmountd.service"
DEFAULT_UNIT_DIR = "/etc/systemd/system"

# Options meaningful to mount(8)/systemd only; the helper drops them (ossmount would accept them anyway).
STRIPPED_OPTIONS = ("_netdev", "nofail", "noauto", "auto", "defaults", "user", "users", "nouser", "owner", "group")
STRIPPED_PREFIXES = ("x-", "comment=")

_TEMPLATE = r"""#!/bin/sh
# mount.fuse.ossmount: the mount(8) helper for `mount -t fuse.ossmount BUCKET[:/PREFIX] DIR -o OPTS`
# and fstab lines of type fuse.ossmount. Written by `ossmount install-helper`.
# It drops options that only mount(8)/systemd use and runs: ossmount mount SPEC DIR -o REST
# The command is $OSSMOUNT if set, else the one recorded at install time, else `ossmount` on PATH.
OSSMOUNT_INSTALLED=@COMMAND@

usage() {
    echo "usage: mount.fuse.ossmount BUCKET[:/PREFIX] MOUNTPOINT [-sfnvrw] [-o OPT[,OPT...]]" >&2
    exit 2
}

spec=
dir=
opts=
fake=
while [ $# -gt 0 ]; do
    case "$1" in
        -o) [ $# -ge 2 ] || usage; opts="${opts:+$opts,}$2"; shift 2 ;;
        -o*) opts="${opts:+$opts,}${1#-o}"; shift ;;
        -N|-t) [ $# -ge 2 ] || usage; shift 2 ;;
        -r) opts="${opts:+$opts,}ro"; shift ;;
        -w) opts="${opts:+$opts,}rw"; shift ;;
        -f) fake=1; shift ;;
        -h|--help) usage ;;
        -[snvi]*) shift ;;
        --) shift ;;
        -*) echo "mount.fuse.ossmount: unknown flag '$1'" >&2; exit 2 ;;
        *)
            if [ -z "$spec" ]; then spec=$1
            elif [ -z "$dir" ]; then dir=$1
            else echo "mount.fuse.ossmount: unexpected argument '$1'" >&2; exit 2
            fi
            shift ;;
    esac
done
[ -n "$spec" ] && [ -n "$dir" ] || usage
# mount -f: pretend, as mount(8) documents
[ -n "$fake" ] && exit 0

rest=
old_ifs=$IFS
IFS=,
for opt in $opts; do
    case "$opt" in
        ""|_netdev|nofail|noauto|auto|defaults|user|users|nouser|owner|group|x-*|comment=*) ;;
        *) rest="${rest:+$rest,}$opt" ;;
    esac
done
IFS=$old_ifs

set -- mount "$spec" "$dir"
[ -n "$rest" ] && set -- "$@" -o "$rest"
if [ -n "$OSSMOUNT" ]; then
    exec $OSSMOUNT "$@"
elif [ -n "$OSSMOUNT_INSTALLED" ]; then
    eval "exec $OSSMOUNT_INSTALLED \"\$@\""
else
    exec ossmount "$@"
fi
"""


_UNIT_TEMPLATE = """\
# ossmountd.service: the ossmount shared-mount daemon. It runs one `ossmount` FUSE process per volume at a
# global path and bind-mounts it onto each target; CSI node plugins, `ossmount ctl` and scripts call it on
# /run/ossmount/ossmountd.sock. Written by `ossmount install-helper --systemd`.
#
# The FUSE processes are the daemon's children but must outlive it: KillMode=process stops only the daemon
# (mounts keep working while it restarts, and the next start adopts them). Do not add PrivateTmp=,
# ProtectSystem=, ProtectHome= or MountFlags=: they give the daemon a mount namespace of its own, and binds
# made there are invisible to the kubelet and to containers.
[Unit]
Description=ossmount shared-mount daemon (OSS volumes for CSI node plugins)
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=@COMMAND@ daemon --socket /run/ossmount/ossmountd.sock --run-dir /run/ossmount --allowed-target-prefix /var/lib/kubelet
KillMode=process
Restart=always
RestartSec=1
# in-flight operations finish before the daemon exits (each is bounded by its timeout, at most 110 s)
TimeoutStopSec=120
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
"""


def installed_command() -> str:
    """The shell-quoted command that runs this ossmount: this interpreter with `-m ossmount`."""
    return " ".join(shlex.quote(part) for part in (os.path.abspath(sys.executable), "-m", "ossmount"))


def render_helper(command: str | None) -> str:
    """The helper script text; `command` is a shell command line (None: use `ossmount` on PATH)."""
    return _TEMPLATE.replace("@COMMAND@", shlex.quote(command) if command else "''")


def render_unit(command: str | None) -> str:
    """The systemd unit text; `command` is the command that runs ossmount (None: `ossmount` on PATH)."""
    return _UNIT_TEMPLATE.replace("@COMMAND@", command or "/usr/bin/env ossmount")


def install_helper(prefix: str | os.PathLike[str] = DEFAULT_PREFIX, command: str | None = None) -> Path:
    """Write `PREFIX/mount.fuse.ossmount` (mode 0755) atomically; return its path."""
    text = render_helper(command if command is not None else installed_command())
    return _install(Path(prefix), HELPER_NAME, text, 0o755)


def install_unit(unit_dir: str | os.PathLike[str] = DEFAULT_UNIT_DIR, command: str | None = None) -> Path:
    """Write `UNIT_DIR/ossmountd.service` (mode 0644) atomically; return its path."""
    return _install(Path(unit_dir), UNIT_NAME, render_unit(command if command is not None else installed_command()),
                    0o644)


def _install(directory: Path, name: str, text: str, mode: int) -> Path:
    if not directory.is_dir():
        raise ConfigError(f"cannot install {name}: {directory} is not a directory")
    target = directory / name
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot install {name} into {directory}: {exc.strerror} (run as root?)") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def main(argv: list[str]) -> int:
    """`ossmount install-helper [--prefix DIR]`: install the helper and print its path."""
    parser = ArgumentParser(
        prog="ossmount install-helper",
        description="Install mount.fuse.ossmount so `mount -t fuse.ossmount` and fstab lines work, or with "
                    "--systemd the ossmount daemon's unit.",
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="directory to install into (default /sbin)")
    parser.add_argument("--systemd", action="store_true", help=f"install {UNIT_NAME} instead of the mount helper")
    parser.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, help=f"where the unit goes (default {DEFAULT_UNIT_DIR})")
    parser.add_argument("--command", default=None,
                        help="command that runs ossmount (default: this interpreter with -m ossmount)")
    parser.add_argument("--prune-updatedb", action="store_true",
                        help="instead, add fuse.ossmount to PRUNEFS in updatedb.conf, so locate's nightly walk "
                             "does not LIST and HEAD every object (idempotent; the rest of the file is kept)")
    parser.add_argument("--updatedb-conf", default=UPDATEDB_CONF, help=f"the file to edit (default {UPDATEDB_CONF})")
    args = parser.parse_args(argv)
    if args.prune_updatedb:
        try:
            changed = prune_updatedb(args.updatedb_conf)
        except FileNotFoundError:
            print(f"{args.updatedb_conf} does not exist (locate is not installed): nothing walks the mounts")
            return 0
        except OSError as exc:
            raise ConfigError(f"cannot edit {args.updatedb_conf}: {exc.strerror} (run as root?)") from None
        print(f"{args.updatedb_conf}: {'added' if changed else 'already has'} fuse.ossmount in PRUNEFS")
        return 0
    if args.systemd:
        path = install_unit(args.unit_dir, args.command)
        print(path)
        print(f"then: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}", file=sys.stderr)
        return 0
    print(install_helper(args.prefix, args.command))
    return 0
