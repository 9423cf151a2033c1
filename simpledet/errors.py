"""Errors caused by the user's input rather than by a bug in simpledet.

The CLI prints a UserError's message (no traceback) and exits with code 2.
"""


class UserError(Exception):
    """Bad input: a config, data file, image, checkpoint or argument the user supplied, or a place
    to write that refuses the file (disk full, no permission)."""
