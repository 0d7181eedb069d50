"""The one exception type for problems a user can fix: its message is a sentence that names the fix.

The CLI prints it as one line (exit code 2); the dashboard shows it with `st.error`. Anything else is a bug.
"""


class UserError(Exception):
    """Bad input or configuration; `str(error)` says what is wrong and how to fix it."""
