"""The single `ossmount` entry point: `ossmount [mount] ...`, `ossmount serve ...`, `ossmount check ...`.

Each subcommand lives in its own module and exposes `main(argv) -> int` (or the function SUBCOMMANDS
names after a colon); this module only dispatches and
turns every failure into one line on stderr plus an exit code (ossmount.errors), never a traceback:
  * `QuietError`: its message and exit code;
  * anything else (a bug, or an OS error no check foresaw): one line naming it, exit 1, with the traceback saved
    to a file (mode 0600 in $TMPDIR or /tmp) the line names, for the bug report;
  * a closed standard output (`ossmount --help | head -1`): silence, exit 141 as if killed by SIGPIPE; one that
    cannot be written (a full disk): one line, exit 3;
  * Ctrl-C: exit 130.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import tempfile
import traceback

from ossmount.errors import EXIT_CONFIG, EXIT_INTERNAL, QuietError, UsageError, exception_leaves, one_line

_TOP_LEVEL_FLAGS = ("-h", "--help", "-V", "--version")
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

SUBCOMMANDS = {
    "mount": "ossmount.mount",
    "serve": "ossmount.server.cli",
    "check": "ossmount.check",
    "install-helper": "ossmount.helper_install",
    "demo": "ossmount.demo",
    "stats": "ossmount.ops.stats",
    "diagnose": "ossmount.ops.diagnose",
    "daemon": "ossmount.daemon.cli",
    "ctl": "ossmount.daemon.ctl",
    "csi": "ossmount.csi.cli",
    "cleanup": "ossmount.maintenance:cleanup_main",
    "recover": "ossmount.maintenance:recover_main",
}

USAGE = """\
usage: ossmount [mount] BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d]
       ossmount check BUCKET[:/PREFIX] -o url=... [-o ...]
       ossmount cleanup BUCKET[:/PREFIX] -o url=... [-o ...] [--older-than HOURS] [--dry-run] [--all]
       ossmount recover [BUCKET[:/PREFIX]] [-o url=...,tmpdir=...]
       ossmount serve --data-dir DIR --listen HOST:PORT --credentials FILE [--bucket NAME]...
       ossmount daemon [--socket PATH] [--run-dir DIR] [--allowed-target-prefix P]... [--metrics-listen H:P]
       ossmount ctl [--socket PATH] {volumes,volume,health,metrics,stage,publish,unpublish,unstage,rotate-credentials} ...
       ossmount stats MOUNTPOINT [--json] [--watch SECONDS] [--by process|operation] [--set-log-level LEVEL]
       ossmount diagnose [MOUNTPOINT...] [-o url=... BUCKET[:/PREFIX]] [--output FILE.tar.gz]
       ossmount install-helper [--prefix /sbin] [--systemd [--unit-dir /etc/systemd/system]] [--prune-updatedb]
       ossmount demo [--keep]
       ossmount csi --endpoint unix:///csi/csi.sock [--node-id NODE] [--controller]
Run `ossmount SUBCOMMAND --help` for details."""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; a first argument that is no subcommand name means `mount`."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0] if args and args[0] in SUBCOMMANDS else "mount"
    command = "ossmount" if not args or args[0] in _TOP_LEVEL_FLAGS else f"ossmount {name}"
    try:
        result = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return result
    except QuietError as exc:
        print(f"{command}: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if not _is_output_failure(exc):
            print(f"{command}: {_unexpected(exc)}", file=sys.stderr)
            return EXIT_INTERNAL
        _silence_stdout()
        print(f"{command}: cannot write to standard output: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    except BaseException as exc:  # noqa: BLE001 - the one place an unforeseen failure becomes one line
        if isinstance(exc, SystemExit):
            raise
        print(f"{command}: {_unexpected(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


def _dispatch(args: list[str]) -> int:
    if not args:
        raise UsageError("missing arguments: ossmount BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]] "
                         "(ossmount --help lists every subcommand and option)")
    if args[0] in ("-h", "--help"):
        from ossmount.options import format_options_help

        print(USAGE)
        print("\nMount options (ossmount [mount] and ossmount check):")
        print(format_options_help())
        return 0
    if args[0] in ("-V", "--version"):
        from ossmount import __version__

        print(f"ossmount {__version__}")
        return 0
    name = args[0] if args[0] in SUBCOMMANDS else "mount"
    if name == args[0]:
        args = args[1:]
    module_name, _, function = SUBCOMMANDS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function or "main")(args)


def _unexpected(exc: BaseException) -> str:
    """One line for a failure nothing turned into a QuietError; the traceback goes to a file it names."""
    leaves = exception_leaves(exc)
    first = leaves[0]
    if isinstance(first, OSError) and first.strerror:
        where = f": {first.filename}" if first.filename else ""
        summary = f"{first.strerror}{where}"
    else:
        summary = f"internal error: {type(first).__name__}: {first}".rstrip(": ")
    summary = one_line(summary)
    try:
        descriptor, path = tempfile.mkstemp(prefix="ossmount-traceback-", suffix=".txt")
        with os.fdopen(descriptor, "w") as report:
            traceback.print_exception(exc, file=report)
    except OSError:
        return f"{summary} (unexpected: please report it with the command that failed)"
    return f"{summary} (unexpected: the traceback is in {path}; please report it)"


def _is_output_failure(exc: OSError) -> bool:
    """An error of writing standard output (a full disk, a quota, a closed descriptor): no file name, and an
    errno that only writing gives."""
    return exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EBADF, errno.EIO)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it again at exit raises nothing (Python's SIGPIPE recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
