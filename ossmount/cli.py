"""The single `ossmount` entry point: `ossmount [mount] ...`, `ossmount serve ...`, `ossmount check ...`.

Each subcommand lives in its own module and exposes `main(argv) -> int`; this module only dispatches and
turns `QuietError` into one line on stderr plus its exit code.
"""

from __future__ import annotations

import importlib
import sys

from ossmount.errors import EXIT_INTERNAL, QuietError

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
}

USAGE = """\
usage: ossmount [mount] BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d]
       ossmount check BUCKET[:/PREFIX] -o url=... [-o ...]
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
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        if args:
            from ossmount.options import format_options_help

            print("\nMount options (ossmount [mount] and ossmount check):")
            print(format_options_help())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from ossmount import __version__

        print(f"ossmount {__version__}")
        return 0
    name = args[0] if args[0] in SUBCOMMANDS else "mount"
    if name == args[0]:
        args = args[1:]
    module = importlib.import_module(SUBCOMMANDS[name])
    try:
        return module.main(args)
    except QuietError as exc:
        print(f"ossmount {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - the one place a bug becomes exit 1 with a traceback
        import traceback

        traceback.print_exc()
        return EXIT_INTERNAL
