"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class PadhashError(Exception):
    """A problem with the user's input (path, value, file contents), not a bug in padhash."""
