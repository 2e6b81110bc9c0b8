"""One exception type for every user-facing error, so the CLI can print it without a traceback."""


class TrtqError(Exception):
    """An error caused by the user's input (file, key, tensor): the message alone must say what to fix."""
