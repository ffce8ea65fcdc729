"""What hale's interop scripts share."""


def failure(e):
    """An exception as one line, the first inner one of (nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"
