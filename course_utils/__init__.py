"""course_utils: the shared helpers of *Multimodal from Scratch*.

What a notebook imports (``pip install -e .`` brings what these need, and nothing more):

- ``course_utils.data``      the Shapes world: scenes, images, captions, questions, vocabulary
- ``course_utils.blocks``    reference building blocks later notebooks import
- ``course_utils.checks``    the autograded checks, a package per notebook, a file per exercise
- ``course_utils.plotting``  image grids, patch grids, heat maps, attention, loss curves
- ``course_utils.training``  the small training loop the notebooks share (``speed``: its timing)
- ``course_utils.device``, ``course_utils.metrics``  the device, seeding, reported figures
- ``course_utils.online``    whether the optional pretrained sections can download

What maintainers and instructors run lives apart, in ``course_utils.tools`` (release, doctor,
check, bench, grade; its dependencies come with the ``instructor`` extra); ``python -m
course_utils`` is its command line. Tooling imports the modules above, never the reverse.
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
    "network_available": "course_utils.online",
}


def __getattr__(name: str):
    # Imported on first use, so that `python -m course_utils doctor` can explain a missing
    # torch instead of failing on import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


__all__ = ["REPOSITORY_URL", "__version__", "get_device", "network_available", "report_metric",
           "seed_everything"]
