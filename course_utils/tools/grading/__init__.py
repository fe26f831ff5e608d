"""Grading with nbgrader: course folders, submissions, autograding, scores.

- ``nbgrader``    drive nbgrader from Python (make_course, submit, autograde, grades)
- ``batch``       ``python -m course_utils grade``: a class, in sandboxes, in parallel
- ``course``      the class's submissions as found, the course folder they are graded in
- ``pool``        the worker processes, each job under a deadline from outside
- ``record``      gradebook, autograded/, feedback/ and the reports, as each result comes
- ``inert``       students' outputs made harmless for the instructor's browser
- ``submission``  grade one submission: restore, run, re-check, decide (reason codes)
- ``sanitize``    read a submission safely; give it back the instructor's cells
- ``execute``     run a notebook in a kernel inside a jail, with limits and timeouts
- ``sandbox``     how processes are jailed on this machine: bubblewrap, its mounts, limits
- ``jail``        one submission's jail: folders, command lines, the watchdog
- ``processes``   leased user ids, process trees, memory and disk of a jail
- ``kernel``      the graded kernel: a jupyter_client provisioner that starts it in the jail
- ``launch``      the first program run in a jail (limits, privileges, then the command)
- ``plan``        the check calls of an assignment's test cells, and the rules they follow
- ``recheck``     the authoritative re-check: cases and comparisons in the trusted process
- ``replay``      which cells the re-check replays (the student's helpers included)
- ``runner``      the re-check's sandboxed side: the student's code on the cases, as data
- ``exchange``    data across the sandbox's wall (JSON and .npy files, never pickles)
- ``safefile``    reading files a student could have replaced (no links, FIFOs, devices)

See docs/instructors.md.
"""
