"""``python -m course_utils``: see ``course_utils.tools.cli``."""

from course_utils.tools.cli import main

raise SystemExit(main())
