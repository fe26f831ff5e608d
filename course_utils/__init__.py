"""course_utils: the shared helpers of *Multimodal from Scratch*.

Submodules (import what a notebook needs):

- ``course_utils.data``      the Shapes world: scenes, images, captions, questions, vocabulary
- ``course_utils.plotting``  image grids, patch grids, heat maps, attention, loss curves
- ``course_utils.checks``    the autograded checks, one module per notebook
- ``course_utils.training``  the small training loop the notebooks share
- ``course_utils.blocks``    reference building blocks later notebooks import

``python -m course_utils`` is the command line (``release``, ``doctor``, ``check``, ``bench``,
``grade``).
"""

from __future__ import annotations

__version__ = "0.1.0"

#: The course's home. The set-up cell and "Open in Colab" badge of every notebook name this URL
#: (a test keeps them in step with this constant and pyproject.toml).
REPOSITORY_URL = "https://github.com/multimodal-from-scratch/course"

_LAZY = {
    "get_device": "course_utils.device",
    "seed_everything": "course_utils.device",
    "report_metric": "course_utils.metrics",
}


def __getattr__(name: str):
    # Imported on first use, so that `python -m course_utils doctor` can explain a missing
    # torch instead of failing on import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


__all__ = ["REPOSITORY_URL", "__version__", "get_device", "report_metric", "seed_everything"]
