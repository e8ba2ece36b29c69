"""The engine's own error types. The CLI turns each into one line and exit code 1."""


class StudyError(Exception):
    """A user-facing problem: its message names the problem and the fix, on one line."""


class SpecError(StudyError):
    """A study spec that cannot be run; raised before anything is trained or written."""

    def __init__(self, where: str, message: str, source: str | None = None):
        self.where, self.message, self.source = where, message, source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")


class StoreError(StudyError):
    """The database cannot be opened or written as asked."""
