"""The store's one exception type for problems a user can fix (a locked, full, read-only or foreign database; an
alert action without a name): its message is a sentence that names the fix. The CLI prints it as one line (exit
code 2); the dashboard shows it with `st.error`. The store imports nothing from the engine, so it has its own."""


class StoreError(Exception):
    """A database problem or a refused store action; `str(error)` says what is wrong and how to fix it."""
