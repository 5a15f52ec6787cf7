"""Sphinx configuration: the pages are Markdown (MyST), the API reference
is generated from the docstrings (autodoc, Google style via napoleon), the
tutorial notebook is rendered as stored (not executed: the test suite
runs it). Build: python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

project = "diffpool_jax"
author = "diffpool_jax developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build"]
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
napoleon_use_ivar = True
