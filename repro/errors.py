"""One error type for every expected failure: the CLI prints its message as one line and exits non-zero."""


class ReproError(Exception):
    """An expected, user-facing failure (bad input, missing GPU, checksum mismatch, ...).

    The message must be one line naming the file/field and what was expected.
    """

    exit_code = 1


class InputError(ReproError):
    """Bad user input or data file (schema, JSON, truncation). Exit code 2."""

    exit_code = 2
