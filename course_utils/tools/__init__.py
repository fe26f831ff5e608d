"""What maintainers and instructors run; nothing a notebook imports.

``course_utils`` itself is what a notebook imports (``data``, ``blocks``, ``checks``,
``plotting``, ``training``, ``device``, ``metrics``, ``speed``); this subpackage holds the
tooling built on it:

- ``cli``: ``python -m course_utils release|doctor|check|bench|grade``;
- ``release``: the student notebooks from ``solutions/`` (nbgrader ``generate_assignment``);
- ``doctor``: is this machine ready for the course?;
- ``selfcheck``: ``check``, the validation a student runs before handing in;
- ``bench``: the course's speed and learning record;
- ``grading``: the sandboxed grader;
- ``solutions``: the exercises of a solution notebook, loaded for tests and benchmarks;
- ``paths``: the course folder and the environment nbgrader runs in.

Tooling imports the student-facing modules, never the reverse (``tests/test_layers.py``).
Its extra dependencies come with ``pip install -e ".[instructor]"``.
"""
