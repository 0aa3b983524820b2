"""Where the project is published, and what the notebooks' Colab badge and install cell do about it.

:data:`PUBLISHED_REPOSITORY` is the one constant that decides it. The project has no public home
yet, so it is ``None``: the notebooks carry no "Open in Colab" badge (it would point at nothing)
but a note saying how to open them in Colab, and their install cell, on Colab, installs from a
folder or zip of the repository (or a wheel) the user uploads, and says so. When the project is
published, set the URL here and in each notebook's install cell (``REPOSITORY = ...``): the
install cell then clones it, and :func:`colab_badge` gives the badge to put in each notebook's
first cell; ``tests/test_notebooks.py`` checks the notebooks follow this constant.

Example:
    >>> colab_badge("01_quickstart_cpu") == COLAB_NOTE
    True
"""

from __future__ import annotations

__all__ = ["COLAB_NOTE", "PUBLISHED_REPOSITORY", "colab_badge"]

PUBLISHED_REPOSITORY: str | None = None  # e.g. "https://github.com/<owner>/paretopo" once it exists

COLAB_NOTE = (
    "*Colab: this project has no published repository yet, so there is no \"Open in Colab\" link. "
    "Upload this notebook to Colab (File → Upload notebook) and, in the Files pane, `dist/paretopo.zip`, "
    "which `make colab-zip` builds in the repository (the project and its `data/`, without `.venv/` or "
    "`runs/`: Colab uploads files, not folders); the install cell finds it and says what it installed.*"
)


def colab_badge(notebook: str) -> str:
    """The first line of ``notebooks/<notebook>.ipynb``: the Colab badge, or :data:`COLAB_NOTE` while unpublished."""
    if PUBLISHED_REPOSITORY is None:
        return COLAB_NOTE
    path = PUBLISHED_REPOSITORY.removeprefix("https://github.com/").rstrip("/")
    return (f'<a href="https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}.ipynb" '
            'target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
            'alt="Open In Colab"/></a>')
