"""Warnings that point at the user's line, however deep in skgeoad they are raised."""

import sys
import warnings

#: Packages whose frames a warning skips: skgeoad's own, scikit-learn's (its
#: ``_fit_context`` wrapper sits between every ``fit`` and its caller, its
#: model selection calls ``fit`` through joblib) and joblib's (``joblib.load``
#: unpickles a detector; ``Parallel`` runs the fits of ``GridSearchCV``).
_INTERNAL_PACKAGES = ("skgeoad", "sklearn", "joblib")


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
    while frame is not None and (_is_import_machinery(frame) or _is_internal(frame)):
        frame = frame.f_back
        # warnings.warn does not count the import machinery's frames (a warning
        # raised while a module is imported): neither may this.
        if frame is not None and not _is_import_machinery(frame):
            level += 1
    warnings.warn(message, category, stacklevel=level + 1)


def _is_internal(frame):
    return frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL_PACKAGES


def _is_import_machinery(frame):
    # The test warnings.warn itself applies to skip such frames.
    filename = frame.f_code.co_filename
    return "importlib" in filename and "_bootstrap" in filename
