"""The one exception type for errors a user can cause or fix.

The CLI prints a `PikubeError` as a single line and exits non-zero; anything else is a bug.
Messages say what is wrong, where (file, object, field, host) and what to do.
"""


class PikubeError(Exception):
    """An error the user can act on; its message is shown as is."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])
