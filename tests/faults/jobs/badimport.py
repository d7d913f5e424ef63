"""A callable module whose import fails when the run starts."""

import faultjobs_no_such_module  # noqa: F401  (the point: this module does not exist)


def run() -> None:
    """Never reached."""
