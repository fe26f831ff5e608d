"""JupyterHub for one class on one machine: system users, nbgrader's exchange, the course's
environment for every single-user server (docs/instructors.md, "Teaching a class").

Run as root, from anywhere: ``jupyterhub -f deploy/hub/jupyterhub_config.py``. Settings come
from the environment, with defaults for a dedicated machine:

COURSE_ENV          the course's virtual environment, readable by every user, holding
                    ``pip install -e ".[lab]"`` and ``jupyterhub`` (default /opt/multimodal)
COURSE_INSTRUCTORS  the instructors' user names, comma-separated (default: none)
COURSE_STUDENTS     the students' user names, comma-separated (default: anyone PAM accepts)
NBGRADER_EXCHANGE   nbgrader's exchange folder (default /srv/nbgrader/exchange)
COURSE_HUB_STATE    the Hub's database and cookie secret (default /srv/jupyterhub)
COURSE_HUB_URL      where the Hub listens (default http://:8000; put HTTPS in front of it)

Students and instructors are ordinary Linux users who log in with their password (PAM).
Each single-user server runs as its user, in their home (mode 0700: nobody else reads it).
Instructors get nbgrader's formgrader and keep the course (with ``solutions/``) in
``~/course``; students get nbgrader's Assignments tab (fetch, submit) and nothing else.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

HERE = Path(__file__).resolve().parent
ENVIRONMENT = Path(os.environ.get("COURSE_ENV", "/opt/multimodal"))
INSTRUCTORS = {name for name in os.environ.get("COURSE_INSTRUCTORS", "").split(",") if name}
STUDENTS = {name for name in os.environ.get("COURSE_STUDENTS", "").split(",") if name}
EXCHANGE = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
STATE = Path(os.environ.get("COURSE_HUB_STATE", "/srv/jupyterhub"))

# 1. Who comes in: system users, by password. Without a roster, anyone PAM accepts.
c.JupyterHub.authenticator_class = "pam"
if STUDENTS:
    c.Authenticator.allowed_users = STUDENTS | INSTRUCTORS
else:
    c.Authenticator.allow_all = True
c.JupyterHub.load_groups = {"instructors": {"users": sorted(INSTRUCTORS)}}

# 2. Where the Hub keeps its state and listens.
c.JupyterHub.bind_url = os.environ.get("COURSE_HUB_URL", "http://:8000")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")

# 3. Each user's server: the course's environment, as that user, in their home.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(ENVIRONMENT / "bin" / "jupyterhub-singleuser")]
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120


def nbgrader_settings(spawner) -> str:
    """The Jupyter config folders of this user: everyone's (the course and its exchange),
    then the instructor's (formgrader on ~/course) or the student's (no formgrader)."""
    role = "instructor" if spawner.user.name in INSTRUCTORS else "student"
    return os.pathsep.join(str(HERE / "jupyter" / part) for part in (role, "common"))


c.Spawner.environment = {
    "JUPYTER_CONFIG_PATH": nbgrader_settings,
    "NBGRADER_EXCHANGE": EXCHANGE,
    "PATH": f"{ENVIRONMENT / 'bin'}:/usr/local/bin:/usr/bin:/bin",
}
