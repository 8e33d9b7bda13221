"""The one exception type that the CLI turns into a one-line message (no traceback)."""


class GenrecsysError(Exception):
    """A user-facing error: bad input, unknown name, missing file.

    The message must name what is wrong (file, line, field, or the valid choices).
    """
