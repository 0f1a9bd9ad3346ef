"""Safe, versioned saving and loading of fitted detectors: no pickle, nothing executed on load.

A saved model is one zip archive:

* ``skgeoad-model.json``, the manifest: the format's name and version; the
  skgeoad, torch, scikit-learn and NumPy versions that wrote it; the
  detector's class (one of the four, by name); its ``get_params()``; and
  every fitted attribute, described as JSON (numbers, strings, lists,
  tagged objects for tuples, dicts with non-string keys, devices, NumPy
  scalars, arrays, tensors and networks);
* ``arrays/<k>.npy``, one NumPy file per array, tensor and network weight,
  read back with ``np.load(allow_pickle=False)``; the manifest records each
  one's dtype and shape, and a file that disagrees is refused.

Networks (and the transformation modules) are stored as their class, one of
an explicit allow-list, the constructor arguments the instance was built
with (:func:`skgeoad.networks._init.records_arguments`), their weights
(``state_dict``) and which sub-modules are in training mode. Loading builds
the class on the ``meta`` device (no memory, no random initialisation, so a
file cannot make it allocate anything before its arrays are checked), then
``load_state_dict(strict=True, assign=True)`` puts the saved tensors in,
with their dtypes.

Loading executes nothing from the file: the manifest is parsed by
:func:`json.loads`, classes are looked up by name in fixed tables, and
arrays refuse object dtypes. Every fitted attribute is saved whatever its
name (public or private), so an attribute added to a detector later is
either saved or refused at save time, never silently dropped.
"""

import io
import json
import math
import os
import secrets
import zipfile

import numpy as np
import sklearn
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

from ._warnings import warn

#: Name written in (and required of) every manifest.
FORMAT_NAME = "skgeoad-model"

#: Version of the layout described in the module docstring. Readers refuse a
#: newer one; bump it on any change an older reader would misread.
FORMAT_VERSION = 1

_MANIFEST = "skgeoad-model.json"

#: Largest manifest read (bytes): a real one takes a few hundred KiB at most.
_MAX_MANIFEST_BYTES = 64 * 2**20


class ModelFileError(ValueError):
    """A file that :func:`skgeoad.load` refuses: not a skgeoad model, damaged, or too new.

    A subclass of :class:`ValueError`, raised before anything from the file
    is used.
    """


class SavedVersionWarning(UserWarning):
    """A model file was written with other skgeoad, torch or scikit-learn versions.

    It still loads; scores may differ where those versions compute differently.
    """


def _estimators():
    from .adgan import ADGANDetector
    from .geometric import GeometricTransformDetector
    from .iterative_ae import IterativeClusterAEDetector
    from .subcluster import SubClusterDetector

    classes = (ADGANDetector, GeometricTransformDetector, IterativeClusterAEDetector, SubClusterDetector)
    return {cls.__name__: cls for cls in classes}


def _modules():
    """The modules a file may name: skgeoad's networks and transformations, nothing else."""
    from . import networks, transforms
    from .adgan import _Critic

    classes = [getattr(networks, name) for name in networks.__all__]
    classes += [transforms.GeometricTransformations, transforms.AffineTransformations, _Critic]
    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes}


def _required_fitted(cls, detector=None):
    """The fitted attributes a loaded ``cls`` must have to score (every fit sets them),
    with those of its model when ``detector`` (as read) says which it is.

    Checked at load, so a file that lacks one is a :class:`ModelFileError`, not an
    ``AttributeError`` at the first ``score_samples``. Kept in step with the detectors
    by ``test_a_file_lacking_a_fitted_attribute_is_refused_or_still_scores``.
    """
    common = ("n_features_in_", "image_shape_", "scaling_", "mixed_precision_", "offset_")
    own = {
        "GeometricTransformDetector": ("network_", "transformations_", "n_transforms_", "_alpha_minus_one"),
        "SubClusterDetector": ("network_", "train_features_", "embedding_", "clusters_"),
        "IterativeClusterAEDetector": ("network_",),
        "ADGANDetector": ("generator_", "critic_", "latent_seeds_"),
    }[cls.__name__]
    if cls.__name__ == "ADGANDetector" and (detector is None or "combined" in getattr(detector, "offsets_", ())):
        own += ("score_moments_",)  # fits from before score_type had no "combined" rule, nor these
    if detector is not None and cls.__name__ == "IterativeClusterAEDetector" and detector._geometric:
        own += ("transformations_", "n_transforms_", "train_features_")
    # An instance's: IterativeClusterAEDetector's rules depend on its model.
    return common + own + (("offsets_",) if (cls if detector is None else detector)._score_rules else ())


def _versions():
    from . import __version__

    return {"skgeoad": __version__, "torch": torch.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}  # fmt: skip


# -- saving -------------------------------------------------------------------


class _Writer:
    """Encodes values as JSON, collecting the arrays they refer to."""

    def __init__(self):
        self.arrays = {}

    def _array(self, array):
        name = f"arrays/{len(self.arrays):04d}.npy"
        self.arrays[name] = array
        return {"file": name, "dtype": array.dtype.str, "shape": list(array.shape)}

    def encode(self, value, where):
        """JSON for ``value``; ``where`` names it in errors (``network_``, ``history_[0]``...)."""
        if value is None or isinstance(value, (bool, str)):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.generic):
            if value.dtype.hasobject:
                raise TypeError(f"{where} is a NumPy object scalar, which cannot be saved without pickle.")
            return {"__scalar__": self._array(np.asarray(value))}
        if isinstance(value, np.ndarray):
            return self._ndarray(value, where)
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {"__tuple__": [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if type(value) is list:
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if type(value) is dict:
            return {"__dict__": [[self.encode(key, f"{where} key"), self.encode(item, f"{where}[{key!r}]")]
                                 for key, item in value.items()]}  # fmt: skip
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, torch.dtype):
            return {"__torch_dtype__": str(value).removeprefix("torch.")}
        if isinstance(value, torch.nn.Module):
            return self._module(value, where)
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self._tensor(value)}
        if isinstance(value, np.random.RandomState):
            name, keys, position, has_gauss, cached = value.get_state()
            state = [name, keys, position, has_gauss, cached]
            return {"__random_state__": self.encode(state, where)}
        kind = "a scikit-learn estimator" if isinstance(value, BaseEstimator) else f"of type {type(value).__qualname__}"
        raise TypeError(
            f"{where} is {kind}, which skgeoad.save cannot store as data (it would need pickle); "
            "use joblib.dump for such an object, or report it as a bug if a detector set it."
        )

    def _ndarray(self, array, where):
        if array.dtype.hasobject:
            # scikit-learn's feature_names_in_ is an object array of strings.
            if all(type(item) is str for item in array.flat):
                return {"__str_array__": array.tolist()}
            raise TypeError(f"{where} is a NumPy array of Python objects, which cannot be saved without pickle.")
        return {"__ndarray__": self._array(np.ascontiguousarray(array))}

    def _tensor(self, tensor):
        tensor = tensor.detach().cpu().contiguous()
        try:
            array = tensor.numpy()
        except TypeError:
            # No NumPy dtype (bfloat16, float8...): the raw bits, as an int of the same size.
            array = tensor.view(getattr(torch, f"int{tensor.element_size() * 8}")).numpy()
        return {**self._array(array), "torch_dtype": str(tensor.dtype).removeprefix("torch."),
                "requires_grad": tensor.requires_grad}  # fmt: skip

    def _module(self, module, where):
        return {
            **self._architecture(module, where),
            "state": {key: self._tensor(value) for key, value in module.state_dict().items()},
            "training": [key for key, sub in module.named_modules() if sub.training],
        }

    def _architecture(self, module, where):
        """The module's class and constructor arguments."""
        name = f"{type(module).__module__}.{type(module).__qualname__}"
        if name not in _modules():
            raise TypeError(
                f"{where} is a {name}, not one of skgeoad's networks {sorted(_modules())}; "
                "skgeoad.save stores only those (use joblib.dump for other modules)."
            )
        if "init_arguments" not in vars(module):
            raise TypeError(
                f"{where} ({name}) does not record its constructor arguments (it was unpickled from "
                "an older skgeoad?); refit the detector with this version to save it."
            )
        arguments = {}
        for key, value in module.init_arguments.items():
            if isinstance(value, torch.nn.Module):
                # A sub-module passed to the constructor (ADGAN's MLP critic wraps an MLP): its
                # architecture only, its weights are in this module's state.
                arguments[key] = self._architecture(value, f"{where}.{key}")
            else:
                arguments[key] = self.encode(value, f"{where}.{key}")
        return {"__module__": name, "arguments": arguments}


def save(detector, path):
    """Save a fitted detector to ``path`` in skgeoad's safe format (no pickle).

    The file is a zip archive of a JSON manifest (format version, the
    versions of skgeoad, torch, scikit-learn and NumPy, the detector's class,
    its parameters and every fitted attribute) and ``.npy`` arrays (network
    weights included); see :mod:`skgeoad.persistence`. Tensors are stored on
    the CPU; the manifest records the device the model was fitted on. The
    file is written next to ``path`` and renamed over it at the end, so an
    interrupted save never leaves half a model behind.

    Parameters
    ----------
    detector : GeometricTransformDetector, ADGANDetector, IterativeClusterAEDetector or SubClusterDetector
        A fitted detector.
    path : str, path-like or writable binary file object
        Where to write (``.skgeoad`` is a good suffix; none is imposed).

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    TypeError
        When ``detector`` is not one of skgeoad's detectors, or one of its
        parameters or fitted attributes cannot be stored as data (the message
        names it): a parameter such as a callable is refused, never dropped.
        A ``numpy.random.RandomState`` as ``random_state`` is stored with its
        state.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> import skgeoad
    >>> X, y = load_digits(return_X_y=True)
    >>> detector = skgeoad.GeometricTransformDetector(
    ...     transformations="rotations", depth=4, widen_factor=1, epochs=1, random_state=0
    ... ).fit(X[y == 0])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zeros.skgeoad"
    >>> skgeoad.save(detector, path)
    >>> loaded = skgeoad.load(path)
    >>> bool(np.array_equal(loaded.score_samples(X[:5]), detector.score_samples(X[:5])))
    True
    """
    estimators = _estimators()
    if type(detector).__name__ not in estimators or type(detector) is not estimators[type(detector).__name__]:
        raise TypeError(
            f"skgeoad.save stores skgeoad's detectors {sorted(estimators)}, not {type(detector).__qualname__}."
        )
    check_is_fitted(detector)
    writer = _Writer()
    params = detector.get_params(deep=False)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "estimator": type(detector).__name__,
        "params": {name: writer.encode(value, f"parameter {name}") for name, value in params.items()},
        "fitted": {
            name: writer.encode(value, f"fitted attribute {name}")
            for name, value in vars(detector).items()
            if name not in params
        },
    }
    text = json.dumps(manifest, allow_nan=False, indent=1).encode()
    if hasattr(path, "write"):
        _write_archive(path, text, writer.arrays)
        return
    path = os.fspath(path)
    handle, temporary = _create_beside(path)
    try:
        with os.fdopen(handle, "wb") as file:
            _write_archive(file, text, writer.arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _create_beside(path):
    """A new, empty file in ``path``'s directory, opened for writing: ``(descriptor, name)``.

    Created with mode ``0o666`` as :func:`open` creates files, so the umask (and a default
    ACL) applies and the model ends up with the mode a plain ``open(path, "wb")`` would give
    it, not :func:`tempfile.mkstemp`'s ``0o600``.
    """
    directory, base = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temporary = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.part")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"No free temporary name beside {path!r}.")


def _write_archive(file, manifest, arrays):
    # The manifest first (a reader checks it before touching anything else);
    # arrays stored uncompressed: weights barely compress, and reading stays fast.
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr(_MANIFEST, manifest, compress_type=zipfile.ZIP_DEFLATED)
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            archive.writestr(name, buffer.getvalue(), compress_type=zipfile.ZIP_STORED)


# -- loading ------------------------------------------------------------------


class _Reader:
    """Decodes the manifest's JSON, reading the arrays it refers to from the archive."""

    def __init__(self, archive, device):
        self.archive, self.device = archive, device

    def _array(self, ref, where):
        try:
            name, dtype, shape = ref["file"], ref["dtype"], ref["shape"]
            if not isinstance(dtype, str) or not isinstance(shape, list):
                raise TypeError("dtype must be a string and shape a list")
            if not all(type(n) is int and n >= 0 for n in shape):
                raise ValueError(f"shape {shape!r} is not a list of non-negative integers")
            dtype, shape = np.dtype(dtype), tuple(shape)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"The description of {where}'s array is malformed ({error}).") from None
        if dtype.hasobject:
            raise ModelFileError(f"{where} claims an object array, which skgeoad never writes.")
        try:
            info = self.archive.getinfo(name)
            # Arrays are stored uncompressed, so reading them never takes more memory than the
            # file's size on disk (a compressed entry could expand to any size).
            if info.compress_type != zipfile.ZIP_STORED:
                raise ModelFileError(f"The array of {where} ({name}) is compressed; skgeoad stores arrays as they are.")
            # Nor may the array claim more data than its entry holds: NumPy would allocate
            # it all before finding the end of the file.
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise ModelFileError(
                    f"The array of {where} ({name}) claims {dtype} {shape}, more data than its "
                    f"{info.file_size} bytes in the file."
                )
            data = self.archive.read(info)
        except KeyError:
            raise ModelFileError(f"The array of {where} ({name}) is missing from the file.") from None
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ModelFileError(f"The array of {where} ({name}) is damaged: {error}.") from None
        try:
            stream = io.BytesIO(data)
            version = np.lib.format.read_magic(stream)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            header_shape, _, header_dtype = readers[version](stream)
            if header_dtype.hasobject:
                raise ValueError("it holds Python objects")
        except (ValueError, OSError, EOFError) as error:
            raise ModelFileError(f"The array of {where} ({name}) is not a valid .npy array: {error}.") from None
        if header_dtype != dtype or header_shape != shape:
            raise ModelFileError(
                f"The array of {where} ({name}) holds {header_dtype} {header_shape}, "
                f"but the manifest says {dtype} {shape}."
            )
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ModelFileError(f"The array of {where} ({name}) is not a valid .npy array: {error}.") from None
        if array.dtype != dtype or array.shape != shape:
            raise ModelFileError(
                f"The array of {where} ({name}) holds {array.dtype} {array.shape}, "
                f"but the manifest says {dtype} {shape}."
            )
        return array

    def _tensor(self, ref, where):
        array = self._array(ref, where)
        dtype = getattr(torch, str(ref.get("torch_dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise ModelFileError(f"{where} names an unknown torch dtype {ref.get('torch_dtype')!r}.")
        tensor = torch.from_numpy(array)
        if tensor.dtype != dtype:
            if tensor.element_size() != torch.empty(0, dtype=dtype).element_size():
                raise ModelFileError(f"{where}: a {array.dtype} array cannot hold {dtype} values.")
            tensor = tensor.view(dtype)
        return tensor.to(self.device).requires_grad_(bool(ref.get("requires_grad", False)))

    def decode(self, value, where):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, dict) or len(value) < 1:
            raise ModelFileError(f"{where} is described by {value!r}, which this reader does not know.")
        tag = next(iter(value))
        content = value[tag]
        if tag == "__float__" and content in ("nan", "inf", "-inf"):
            return float(content)
        if tag == "__tuple__" and isinstance(content, list):
            return tuple(self.decode(item, f"{where}[{i}]") for i, item in enumerate(content))
        if tag == "__dict__" and isinstance(content, list):
            pairs = [(self.decode(k, f"{where} key"), v) for k, v in content]
            return {key: self.decode(item, f"{where}[{key!r}]") for key, item in pairs}
        if tag == "__scalar__":
            array = self._array(content, where)
            if array.ndim:
                raise ModelFileError(f"{where} should be a scalar, got an array of shape {array.shape}.")
            return array[()]
        if tag == "__ndarray__":
            return self._array(content, where)
        if tag == "__str_array__" and isinstance(content, list):
            return np.array(content, dtype=object)
        if tag == "__device__":
            return torch.device(content)
        if tag == "__torch_dtype__":
            dtype = getattr(torch, str(content), None)
            if isinstance(dtype, torch.dtype):
                return dtype
        if tag == "__tensor__":
            return self._tensor(content, where)
        if tag == "__random_state__":
            random_state = np.random.RandomState()
            random_state.set_state(tuple(self.decode(content, where)))
            return random_state
        if tag == "__module__":
            return self._module(value, where)
        raise ModelFileError(f"{where} is described by a {tag!r} entry, which this reader does not know.")

    def _module(self, value, where, argument=False):
        """A network rebuilt on the meta device and filled with its saved state (``argument``:
        a constructor argument of another network, whose state fills it)."""
        name = value["__module__"]
        cls = _modules().get(name)
        if cls is None:
            raise ModelFileError(f"{where} names the module {name!r}, which is not one of skgeoad's networks.")
        try:
            arguments = {
                key: self._module(item, f"{where}.{key}", argument=True)
                if isinstance(item, dict) and "__module__" in item
                else self.decode(item, f"{where}.{key}")
                for key, item in value["arguments"].items()
            }
            with torch.device("meta"):
                module = cls(**arguments)
            if argument:
                return module
            state = {key: self._tensor(ref, f"{where}.{key}") for key, ref in value["state"].items()}
            module.load_state_dict(state, strict=True, assign=True)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            message = str(error)
            message = message if len(message) < 1000 else message[:1000] + " ..."
            raise ModelFileError(f"{where} ({name}) cannot be rebuilt from the file: {message}") from None
        left = [key for key, tensor in (*module.named_parameters(), *module.named_buffers()) if tensor.is_meta]
        if left:
            raise ModelFileError(f"{where} ({name}) has tensors the file does not hold: {left}.")
        training = set(value.get("training", ()))
        for key, sub in module.named_modules():
            sub.training = key in training
        return module


def load(path, device=None):
    """Load a detector saved by :func:`save`; nothing in the file is executed.

    Parameters
    ----------
    path : str, path-like or readable binary file object
        A file written by :func:`skgeoad.save`.
    device : str, torch.device or None, default=None
        Where the loaded model computes. ``None``: the device it was fitted
        on when this machine has it, else the CPU with a warning (as a
        pickle of a GPU-fitted model loads). ``"cpu"``, ``"cuda:1"``,
        ``"auto"``...: that device (refused if it is not available).
        ``device_`` says where the model lives; the ``device`` parameter is
        kept as it was fitted with, and a refit uses it.

    Returns
    -------
    detector : estimator
        The fitted detector, scoring exactly as the saved one on the same
        device (bit for bit on the CPU).

    Raises
    ------
    ModelFileError
        A :class:`ValueError` for a file that is not a skgeoad model (a
        pickle or joblib file, another zip archive, a truncated or damaged
        file), that was written by a newer format version than this reader
        knows, that names a class outside skgeoad's detectors and networks,
        whose arrays are missing or do not match the manifest (an array
        claiming more data than the file holds is refused before anything
        is allocated), whose parameters fail the detector's validation, or
        whose fitted attributes would shadow a method or parameter. Nothing
        is unpickled, ever.

    Warns
    -----
    SavedVersionWarning
        When the file was written with other skgeoad, torch or scikit-learn
        releases than those installed (torch's build label, ``+cu126``
        against ``+cpu``, is not a difference).
    UserWarning
        When the model was fitted on a device this machine lacks and
        ``device=None`` (it loads on the CPU).

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn.datasets import load_digits
    >>> import skgeoad
    >>> X, y = load_digits(return_X_y=True)
    >>> detector = skgeoad.SubClusterDetector(epochs=1, random_state=0).fit(X[y < 3])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "digits.skgeoad"
    >>> skgeoad.save(detector, path)
    >>> skgeoad.load(path, device="cpu").predict(X[:4])
    array([ 1,  1,  1, -1])
    """
    from ._torch import fallback_device, resolve_device

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{_name(path)} is not a skgeoad model file: {_what_it_is(path, error)}") from None
    with archive:
        manifest = _read_manifest(archive, path)
        cls = _estimators()[manifest["estimator"]]
        _warn_on_versions(manifest.get("versions"))
        fitted = manifest["fitted"]
        try:
            saved_device = torch.device(fitted.get("device_", {}).get("__device__", "cpu"))
        except (AttributeError, TypeError, RuntimeError):
            saved_device = None
        if saved_device is None:
            raise ModelFileError(f"{_name(path)}: its device_ is not a torch device: {fitted.get('device_')!r}.")
        target = fallback_device(saved_device) if device is None else resolve_device(device)
        detector = _rebuild(cls, manifest, _Reader(archive, target))
    # Before the check: what an earlier version's file lacks may be derived from what it has.
    detector._complete_older_fit()
    missing = [name for name in _required_fitted(cls, detector) if name not in vars(detector)]
    if missing:
        raise ModelFileError(f"The file lacks fitted attributes {cls.__name__} needs to score: {missing}.")
    detector._place_on(target)  # the arrays were read onto it; this sets device_ and autocast
    try:
        check_is_fitted(detector)
    except NotFittedError:
        raise ModelFileError(f"The file holds no fitted state of {cls.__name__}.") from None
    return detector


def _rebuild(cls, manifest, reader):
    """The detector the manifest describes; anything malformed in it is a :class:`ModelFileError`."""
    where = "the manifest"
    try:
        where = "its parameters"
        params = {name: reader.decode(value, f"parameter {name}") for name, value in manifest["params"].items()}
        detector = cls(**params)
        try:
            detector._validate_params()
        except InvalidParameterError as error:
            raise ModelFileError(f"The file's parameters of {cls.__name__} are invalid: {error}") from None
        for name, value in manifest["fitted"].items():
            where = f"fitted attribute {name}"
            # Only data: never a name that would shadow a method, a class attribute or a parameter.
            if name.startswith("__") or hasattr(cls, name) or name in params:
                raise ModelFileError(
                    f"The file names a fitted attribute {name!r}, which would replace a method, "
                    f"class attribute or parameter of {cls.__name__}."
                )
            setattr(detector, name, reader.decode(value, where))
    except ModelFileError:
        raise
    except RecursionError:
        raise ModelFileError(f"The file's description of {cls.__name__} is nested too deeply at {where}.") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as error:
        raise ModelFileError(f"The file's description of {cls.__name__} is damaged at {where}: {error!r}") from None
    return detector


def _read_manifest(archive, path):
    try:
        info = archive.getinfo(_MANIFEST)
    except KeyError:
        raise ModelFileError(
            f"{_name(path)} is a zip archive, but not a skgeoad model file (it has no {_MANIFEST})."
        ) from None
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{_name(path)}: its manifest of {info.file_size} bytes is not one skgeoad writes.")
    try:
        manifest = json.loads(archive.read(info))
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{_name(path)}: its manifest is damaged ({error}).") from None
    except RecursionError:
        raise ModelFileError(f"{_name(path)}: its manifest is nested too deeply to be one skgeoad writes.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{_name(path)} is not a skgeoad model file (its manifest names no {FORMAT_NAME!r}).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{_name(path)}: format_version {version!r} is not a positive integer.")
    if version > FORMAT_VERSION:
        written_by = (manifest.get("versions") or {}).get("skgeoad", "a newer skgeoad")
        raise ModelFileError(
            f"{_name(path)} has format version {version}, written by skgeoad {written_by}; this skgeoad "
            f"reads format versions up to {FORMAT_VERSION}. Upgrade skgeoad to load it."
        )
    estimators = _estimators()
    if not isinstance(manifest.get("estimator"), str) or manifest["estimator"] not in estimators:
        raise ModelFileError(
            f"{_name(path)} holds a {manifest.get('estimator')!r}, not one of skgeoad's detectors "
            f"{sorted(estimators)}."
        )
    for section in ("params", "fitted"):
        if not isinstance(manifest.get(section), dict):
            raise ModelFileError(f"{_name(path)}: its manifest has no {section!r} section.")
    return manifest


def _warn_on_versions(saved):
    saved = saved if isinstance(saved, dict) else {}
    here = _versions()

    def release(version):
        # torch's local build label (2.13.0+cu126 against +cpu) is the same release: a model
        # fitted on a GPU box and served from a CPU one should not warn for it.
        return str(version).split("+")[0]

    differ = [f"{name} {saved.get(name, 'unknown')} (here {here[name]})"
              for name in ("skgeoad", "torch", "scikit-learn")
              if release(saved.get(name)) != release(here[name])]  # fmt: skip
    if differ:
        warn(
            "This model was saved with " + ", ".join(differ) + "; it loads, but scores may differ "
            "slightly where those versions compute differently.",
            SavedVersionWarning,
        )


def _name(path):
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "The file"


def _what_it_is(path, error):
    """A hint at what a file that is not a zip archive is."""
    try:
        if isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as file:
                head = file.read(8)
        else:
            path.seek(0)
            head = path.read(8)
    except OSError:
        head = b""
    zlib = len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0
    # Pickle protocols 2-5, and the zlib, gzip, bz2, xz and lzma wrappers of joblib.dump(compress=...).
    if head[:1] == b"\x80" or zlib or head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00")):
        return (
            "it looks like a pickle or joblib file (perhaps compressed). skgeoad.load never unpickles (a pickle runs "
            "code when loaded); load it with joblib.load only if you trust where it came from, "
            "then skgeoad.save it."
        )
    if head[:2] == b"PK":
        return f"a damaged or truncated zip archive ({error})."
    return f"not a zip archive ({error})."


__all__ = ["FORMAT_VERSION", "ModelFileError", "SavedVersionWarning", "load", "save"]
