"""nbgrader configuration for the course (run nbgrader from this folder).

The instructor's notebooks (with solutions and hidden tests) are nbgrader's *source*;
the student notebooks it generates are the *release*. See README.md, "Instructors".
"""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# The jupytext sources (*.py) beside each solution notebook stay with the instructor.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Training cells take minutes on a laptop CPU: nbgrader's default of 30 s per cell is too short.
c.Execute.timeout = 900
c.Execute.interrupt_on_timeout = True

# Formgrader and the feedback pages are opened in a browser logged into the instructor's
# Jupyter server: render the HTML of students' Markdown and outputs inert (no scripts, no
# event handlers). `python -m course_utils grade` also drops such outputs from autograded/.
c.HTMLExporter.sanitize_html = True
