"""The one exception type for errors a user can cause or fix.

The CLI prints a `PikubeError` as a single line and exits non-zero; anything else is a bug.
Messages say what is wrong, where (file, object, field, host) and what to do.

A message may quote the user's input, and input can be huge or hostile (a 50 MB scalar): every
message is bounded here, once, so no caller has to remember to (see `bounded`).
"""

EXCERPT_CHARS = 200  # the most of one word (a quoted value, a path) a message shows
MESSAGE_CHARS = 1000  # the most a whole message shows


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` if short; otherwise its start, an ellipsis and how long it really is."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}…({len(text)} characters)"


def bounded(message: str) -> str:
    """One line of at most about MESSAGE_CHARS: long runs without spaces (a quoted value, most
    likely) become excerpts, line breaks become spaces, and an overlong rest is cut in the
    middle, keeping the start (where) and the end (what to do)."""
    if len(message) <= EXCERPT_CHARS and "\n" not in message:
        return message
    words = [excerpt(word) for word in message.split()]
    text = " ".join(words)
    if len(text) <= MESSAGE_CHARS:
        return text
    cut = len(text) - MESSAGE_CHARS
    head = MESSAGE_CHARS * 2 // 3
    return f"{text[:head]} …({cut} characters cut)… {text[head + cut :]}"


class PikubeError(Exception):
    """An error the user can act on; its message is shown as is (bounded, on one line)."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(bounded(message))
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(PikubeError):
    """What the user typed or gave is wrong (an option, a spec, a manifest, a missing or too
    large file): exit status 2, as for click's usage errors. Everything else that fails exits
    1 (the convention: README, "Exit status", and docs/decisions/0090)."""

    exit_code = 2
