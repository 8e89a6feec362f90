"""jaxgd's own errors: every refusal of bad input is one of these, and nothing else is.

The command line turns a :class:`JaxgdError` (and the operating system's errors: a missing
file, a full disk) into one line and exit code 2. Any other exception is a bug in jaxgd,
reported as one (exit code 1, with the traceback written to a file). Each class also
derives from the built-in exception a caller would expect (``ValueError``, ``TypeError``),
so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class JaxgdError(Exception):
    """Base class: the user asked for something jaxgd cannot do; the message says what and how to proceed."""


class InvalidArgument(JaxgdError, ValueError):
    """A value jaxgd refuses: a bad option, field, shape or range (named in the message)."""


class InvalidType(JaxgdError, TypeError):
    """An argument of the wrong kind (a class instead of an instance, an optimizer instance, ...)."""


class DataError(JaxgdError, ValueError):
    """Data that cannot be used as given: malformed files, labels out of range, an empty split."""


class DatasetNotPrepared(JaxgdError, RuntimeError):
    """A named dataset that is not on this machine and cannot be downloaded."""


class CheckpointError(JaxgdError, ValueError):
    """A checkpoint that is damaged, or belongs to another run."""


class RunDirError(JaxgdError, ValueError):
    """An output directory that cannot be used as asked (not empty, in use, someone else's files, ...)."""


class OutOfMemory(JaxgdError, ValueError):
    """A run that cannot fit in the memory of its devices, refused before anything is allocated."""


class DisagreementError(JaxgdError, ValueError):
    """The processes of a distributed job disagree about a run (its configuration, keys or data)."""


class UsageError(JaxgdError):
    """A command line that cannot be parsed (argparse's own errors)."""


class MissingDependency(JaxgdError, ImportError):
    """An optional package a feature needs is not installed (the message says which extra installs it)."""


class StartupError(JaxgdError, RuntimeError):
    """JAX cannot be set up as asked: devices fixed already, a distributed job that cannot be joined."""
