"""The one exception type the CLI turns into a clean message (no traceback)."""


class UserError(Exception):
    """Bad input or an environment problem the user can fix; the message says how."""
