"""Errors that end a command with a one-line message and a documented exit code.

Exit codes (stable; the CSI node plugin and mount(8) branch on them):
  0  success
  1  unexpected internal error (a bug: the traceback is logged)
  2  usage error: a malformed or unknown option, a bad argument
  3  configuration error: credentials file missing or too open, mime file unreadable
  4  authentication refused by OSS (InvalidAccessKeyId, SignatureDoesNotMatch, bad STS token)
  5  bucket or prefix problem (NoSuchBucket, AccessDenied on the bucket)
  6  endpoint unreachable or timing out
  7  mount failed (mountpoint missing or not empty, FUSE unavailable, readiness timeout)
"""

import argparse

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_AUTH = 4
EXIT_BUCKET = 5
EXIT_UNREACHABLE = 6
EXIT_MOUNT = 7


class QuietError(Exception):
    """A failure the user can fix: printed as one line (no traceback), process exits with `exit_code`."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(QuietError):
    exit_code = EXIT_USAGE


class ArgumentParser(argparse.ArgumentParser):
    """argparse for ossmount's subcommands: a bad command line is a UsageError (one line naming `--help`, exit 2)
    rather than argparse's usage block and exit."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


class ConfigError(QuietError):
    exit_code = EXIT_CONFIG


def one_line(message: str) -> str:
    """`message` as one line: line breaks and other control characters (from a path or value the user gave)
    become escapes such as '\\n'."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, depth first, with ExceptionGroups flattened away (trio nurseries always wrap)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in exception_leaves(inner)]
    return [exc]


def single_quiet_error(group: BaseExceptionGroup) -> BaseException:
    """A trio nursery wraps the one user-facing failure in an ExceptionGroup: the QuietError inside, if any
    (for the one-line message), else the group itself."""
    quiet = [exc for exc in exception_leaves(group) if isinstance(exc, QuietError)]
    return quiet[0] if quiet else group
