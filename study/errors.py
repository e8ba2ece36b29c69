"""The engine's own error types. The CLI turns each into one line and exit code 1."""


class StudyError(Exception):
    """A user-facing problem: its message names the problem and the fix, on one line."""


class SpecError(StudyError):
    """A study spec that cannot be run; raised before anything is trained or written."""

    def __init__(self, where: str, message: str, source: str | None = None):
        where, message = _one_line(where), _one_line(message)
        self.where, self.message, self.source = where, message, source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")


class StoreError(StudyError):
    """The database cannot be opened or written as asked."""


def _one_line(text: str) -> str:
    """User-typed keys may hold newlines or control characters: escape them, keep one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def error_text(err: BaseException) -> str:
    """The last lines of an exception's traceback: what a failed trial records."""
    import traceback

    lines = traceback.format_exception(type(err), err, err.__traceback__)
    return "".join(lines[-4:]).strip()
