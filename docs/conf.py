"""Sphinx configuration of skgeoad's documentation."""

import os
import sys
import warnings

sys.path.insert(0, os.path.abspath(".."))
import skgeoad  # noqa: E402

project = "skgeoad"
author = "the skgeoad developers"
copyright = "2026, the skgeoad developers"
release = version = skgeoad.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# Inherited members document the estimators' fit/predict/...; torch's Module
# API and scikit-learn's metadata-routing plumbing are not ours to document.
autodoc_default_options = {
    "members": True,
    "inherited-members": "Module",
    # scikit-learn's own pages document these (set_output's docstring points into them).
    "exclude-members": "get_metadata_routing, set_fit_request, set_score_request, set_predict_request, set_output",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]

html_theme = "pydata_sphinx_theme"
html_title = "skgeoad"
html_theme_options = {"navigation_with_keys": False}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "run_stale_examples": True,
    "matplotlib_animations": False,
    "min_reported_time": 0,
}

# The examples fit models on the CPU: no progress bars in the rendered output.
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
