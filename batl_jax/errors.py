"""The one exception type users see: a problem with their input, and the fix."""


class BatlError(Exception):
    """A user-facing error: the message names the problem and how to fix it.

    Entry points catch it, print the message on one line and exit with status 2,
    leaving every file already written untouched. The message itself is one line
    (problem; fix); long supporting lists (every mismatched tensor, every bad line of a
    label file) go to ``details``, which entry points print indented below it.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, details: list[str] | tuple[str, ...] = ()):
        # One line: a newline would split "error: ..." and hide the fix from log scrapers.
        super().__init__(" ".join(str(message).split("\n")))
        self.details = list(details)


class ConfigError(BatlError):
    """A bad or inconsistent configuration value."""


class DataError(BatlError):
    """A missing, empty or malformed dataset."""


class ModelError(BatlError):
    """A model directory or hub id that cannot be loaded."""


class StateError(BatlError):
    """A workdir whose saved state cannot be resumed."""


class LockError(BatlError):
    """The workdir is in use by another run: one run per workdir at a time."""
