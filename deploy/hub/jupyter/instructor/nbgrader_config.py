"""nbgrader for an instructor: the course is the clone of the repository in ``~/course``,
with its own settings (solutions/ as the source, notebooks/ as the release)."""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

COURSE = os.path.expanduser("~/course")
c.CourseDirectory.root = COURSE
if os.path.exists(os.path.join(COURSE, "nbgrader_config.py")):
    load_subconfig(os.path.join(COURSE, "nbgrader_config.py"))  # noqa: F821
