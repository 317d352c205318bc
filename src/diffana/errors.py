"""diffana's exceptions, in one place.

Every error diffana raises on purpose derives from :class:`DiffanaError`, so a caller
can catch them all with one clause. Each class also keeps the built-in base it had
before this module existed (``ValueError`` for bad input), so ``except ValueError``
keeps working. Messages name the file, key, channel, sample or branch at fault.

This module imports nothing from diffana: every other module may import it.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "ConfigError",
    "DiffanaError",
    "InvalidModel",
    "PatchError",
    "SampleIOError",
    "WorkspaceError",
]


class DiffanaError(Exception):
    """Base of every error diffana raises on purpose."""


class InvalidModel(DiffanaError, ValueError):
    """A model specification that cannot describe a valid likelihood."""


class WorkspaceError(DiffanaError, ValueError):
    """A workspace or model spec that cannot be used; the message names the JSON
    path (``$.channels[0].samples[1]``, …) and the channel, sample or key at fault."""


class PatchError(DiffanaError, ValueError):
    """A patch or patchset that cannot be used; one line naming the file, the
    patch and what is wrong."""


class SampleIOError(DiffanaError):
    """A sample cannot be read or written; the message names the file, tree and branch."""


class ConfigError(DiffanaError, ValueError):
    """A configuration problem, with the key at fault in the message."""


class CommandError(DiffanaError):
    """An error a user can act on: printed as one line, exit code 2, no traceback."""
