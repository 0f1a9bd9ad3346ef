"""Warnings that point at the user's line, however deep in skgeoad they are raised."""

import sys
import warnings

#: Packages whose frames a warning skips: skgeoad's own, and scikit-learn's
#: (its ``_fit_context`` wrapper sits between every ``fit`` and its caller).
_INTERNAL_PACKAGES = ("skgeoad", "sklearn")


def warn(message, category=UserWarning):
    """``warnings.warn`` attributed to the first caller outside skgeoad and scikit-learn.

    A fixed ``stacklevel`` is right for one call path only: the same warning
    reached through a subclass's ``fit`` (one frame deeper) or ``skgeoad.load``
    would name a line of skgeoad instead of the user's.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("careful")
    >>> caught[0].category.__name__, str(caught[0].message)
    ('UserWarning', 'careful')
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL_PACKAGES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
