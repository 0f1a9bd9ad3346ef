"""Package-wide settings that are about the machine, not the model.

They are not estimator parameters because they do not change what a detector
learns, only where its data sits and how repeatable its arithmetic is. They
apply to every detector in the process (or the ``with`` block), in every
thread: torch's deterministic mode, which ``deterministic`` switches, is
process-wide too.
"""

import contextlib

import numpy as np

_DEFAULTS = {
    # Scaled data up to this size is kept on the device for the whole of fit
    # or scoring (one copy); larger data stays in host memory and streams to
    # the device batch by batch, so device memory is bounded by the batch.
    "device_data_bytes": 2 * 2**30,
    # Ask torch for deterministic kernels during fit and scoring (bit-identical
    # CUDA runs for a seed, at some speed cost).
    "deterministic": False,
    # Convolutional networks and their image batches in channels-last memory
    # (NHWC): what oneDNN's bf16 kernels on CPUs and cuDNN's tensor cores are
    # fastest at. False computes in torch's default NCHW layout.
    "channels_last": True,
}

_CONFIG = dict(_DEFAULTS)


def _config():
    return _CONFIG


def get_config():
    """The current settings, as a dict (a copy).

    Examples
    --------
    >>> from skgeoad import get_config
    >>> get_config()["deterministic"]
    False
    """
    return dict(_config())


def set_config(*, device_data_bytes=None, deterministic=None, channels_last=None):
    """Change package-wide settings (for the whole process).

    Parameters
    ----------
    device_data_bytes : int, optional
        Largest scaled data set (in bytes) kept whole on the device during fit
        and scoring; larger inputs stream from host memory in batches (pinned,
        non-blocking copies on CUDA). Scores are the same either way. Default
        2 GiB; 0 always streams.
    deterministic : bool, optional
        Run fit and scoring under ``torch.use_deterministic_algorithms(True)``
        (and cuDNN's deterministic mode), so that the same seed on the same
        CUDA device gives bit-identical scores. On CUDA this needs the
        environment variable ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before
        the process first uses the GPU (torch raises an error naming it
        otherwise). Default False.
    channels_last : bool, optional
        Keep convolutional networks and the image batches they compute on in
        channels-last memory (NHWC), the layout whose kernels are fastest on
        CPUs (oneDNN, above all in bf16) and on GPUs (cuDNN's tensor cores).
        Default True; False computes in torch's default layout (NCHW), which
        gives the same scores up to float rounding, more slowly. It applies
        to networks as they are built or loaded, so set it before ``fit``,
        :func:`skgeoad.load` or unpickling.
    """
    config = _config()
    if device_data_bytes is not None:
        if not isinstance(device_data_bytes, (int, np.integer)) or device_data_bytes < 0:
            raise ValueError(f"device_data_bytes must be a non-negative integer, got {device_data_bytes!r}.")
        config["device_data_bytes"] = int(device_data_bytes)
    if deterministic is not None:
        if not isinstance(deterministic, bool):
            raise ValueError(f"deterministic must be True or False, got {deterministic!r}.")
        config["deterministic"] = deterministic
    if channels_last is not None:
        if not isinstance(channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {channels_last!r}.")
        config["channels_last"] = channels_last


@contextlib.contextmanager
def config_context(**settings):
    """Change settings inside a ``with`` block only (see :func:`set_config`).

    Examples
    --------
    >>> from skgeoad import config_context, get_config
    >>> with config_context(device_data_bytes=0):      # stream every batch
    ...     get_config()["device_data_bytes"]
    0
    """
    saved = get_config()
    set_config(**settings)
    try:
        yield
    finally:
        _config().update(saved)


__all__ = ["config_context", "get_config", "set_config"]
