"""User-facing errors.

Every problem caused by the user's input (a file, a flag, a model folder) raises
:class:`MaskgenError` with a one-line message naming the input; the CLI prints it as
``maskgen: error: <message>`` and exits with status 2. Anything else is a bug and keeps its
traceback.
"""


class MaskgenError(Exception):
    """A problem with the user's input, reported as one line naming that input."""


class NonFiniteLossError(MaskgenError):
    """A training loss became NaN or infinite; the last good checkpoint is kept."""
