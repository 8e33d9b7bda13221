"""The one exception type that the CLI turns into a one-line message (no traceback)."""

_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\x00": "\\x00", "\t": "\\t"})


class GenrecsysError(Exception):
    """A user-facing error: bad input, unknown name, missing file.

    The message must name what is wrong (file, line, field, or the valid choices). It is
    always one line: line breaks that come in with user input (a path, a cell) are shown
    escaped.

    >>> str(GenrecsysError("path not found: a\\nb"))
    'path not found: a\\\\nb'
    """

    def __str__(self) -> str:
        return super().__str__().translate(_ESCAPES)
