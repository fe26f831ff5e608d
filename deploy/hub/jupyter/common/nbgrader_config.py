"""nbgrader for everyone on the hub: one course, one exchange (release, fetch, submit,
collect). The exchange folder must exist and be writable by all (``chmod 1777``)."""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "multimodal"
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
