"""The zoo's own errors, for mistakes a user can fix.

Every one subclasses :class:`ZooError`, so ``except zoo.ZooError`` catches them all, and also
the closest builtin (``ValueError``, ``LookupError``, ``OSError``), so that generic handlers keep
working. Each message is one line that names what was wrong and what to do; the command line
prints it without a traceback. This module imports nothing from the rest of the package.

The errors of checkpoints and the Hub live in :mod:`zoo.hub.errors`; they subclass the same
:class:`ZooError`.
"""

from __future__ import annotations

__all__ = [
    "DeviceError",
    "ExtrapolationWarning",
    "InputError",
    "OutOfMemoryError",
    "OutputError",
    "UnknownArchitectureError",
    "ZooError",
]


class ZooError(Exception):
    """Base class of the zoo's own errors."""


class InputError(ZooError, ValueError):
    """Input a model cannot give a meaningful prediction for.

    Examples: elements the model was never trained on, a periodic frame for a model of isolated
    molecules, two atoms at the same place, or a point cloud sent to a molecule model.
    """


class DeviceError(ZooError, ValueError):
    """A device name torch does not know, or a device this machine does not have."""


class OutputError(ZooError, OSError):
    """An output file that could not be written (the message names it)."""


class OutOfMemoryError(ZooError, MemoryError):
    """A forward pass that ran out of memory (the message says how much the input needs)."""


class ExtrapolationWarning(UserWarning):
    """Input unlike the training data (e.g. another molecule): the prediction is a guess."""


class UnknownArchitectureError(ZooError, KeyError):
    """An architecture or preset name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0]) if self.args else ""
