"""Errors that the command line turns into a message and an exit code.

Exit codes: 1 means the data is damaged or fails verification, 2 means bad
usage or an input we cannot read. Anything else is a bug and shows a traceback
only with ``--debug``.
"""


class LvpnetError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class InputError(LvpnetError):
    """Missing, unreadable or unsupported input (exit 2)."""


class NotLvpError(InputError):
    """The file is not an lvpnet file at all (exit 2)."""


class NewerFormatError(InputError):
    """Made by a newer lvpnet whose format this one cannot read (exit 2)."""


class NotColourError(InputError):
    """``--rgb`` (``rgb=True``) for an array whose last axis is not 3 colours (exit 2)."""


class DamagedError(LvpnetError):
    """Damaged, truncated or failing verification (exit 1)."""

    exit_code = 1


class LimitError(InputError):
    """Decoding would need more memory than the limit allows (exit 2; ``lvpnet.limits``)."""
