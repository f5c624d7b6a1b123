"""Sphinx configuration of fastnn's documentation.

Build (warnings are errors in CI)::

    pip install ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

The pages are MyST Markdown; the user guide includes README sections, so the README stays
the one source. The API reference is generated from the numpydoc docstrings.
"""
from __future__ import annotations

import fastnn

project = "fastnn"
author = "fastnn developers"
copyright = "2026, fastnn developers"
release = fastnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# benchmarks.md is bench/chart.py's table, included by performance.md.
exclude_patterns = ["_build", "benchmarks.md"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
# scikit-learn adds set_*_request methods to every estimator class (metadata routing); their
# docstrings are scikit-learn's, with references into its own documentation.
autodoc_default_options = {
    "members": True,
    # fit, score, diagnose, save... live in fastnn's private base classes: show them, but
    # not what scikit-learn's mixins add (their docstrings point into scikit-learn's docs).
    "inherited-members": "BaseEstimator,RegressorMixin,ClassifierMixin,TransformerMixin,OneToOneFeatureMixin,"
                         "ClassNamePrefixFeaturesOutMixin,object",
    "show-inheritance": True,
    "exclude-members": "set_fit_request,set_partial_fit_request,set_score_request,set_predict_request,"
                       "set_transform_request,set_inverse_transform_request,set_output,get_metadata_routing",
}
templates_path = ["_templates"]
autodoc_typehints = "none"  # the numpydoc sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"fastnn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
