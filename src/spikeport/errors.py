"""Exceptions that spikeport raises on bad input.

Every message names the problem and the fix in one line; callers (the CLI above all) print
``str(error)`` and nothing else.
"""


class SpikeportError(Exception):
    """Base class of every error spikeport raises on purpose."""


class ConversionError(SpikeportError):
    """The model cannot be converted as it is (unsupported op, untraceable, bad weights...)."""


class CalibrationError(SpikeportError):
    """Calibration data is missing, empty or does not fit the model."""


class DataError(SpikeportError):
    """A dataset spec or file cannot be read."""


class InputShapeError(SpikeportError):
    """The input given to a network does not have the shape it was converted for."""


class SaveFormatError(SpikeportError):
    """A saved file is not a spikeport file, is corrupt, or comes from an incompatible version."""


class OptionError(SpikeportError, ValueError):
    """An option or argument has a value of the wrong kind or range (names the option and what it takes).

    Also a ``ValueError``, so callers that caught the ``ValueError`` spikeport raised before keep working.
    """


class InputError(SpikeportError, ValueError):
    """Data given to convert, evaluate or a network is unusable as it is (non-finite, wrong dtype, bad labels)."""
