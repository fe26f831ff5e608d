"""The Kubernetes deployment (deploy/kubernetes/values.yaml) is valid and self-consistent.

- It validates against the Zero to JupyterHub chart's JSON schema (vendored beside it), the
  way `helm install` does: over the chart's defaults. A misspelt key or a wrong type there
  would only surface when the instructor installs the chart.
- nbgrader's exchange volume is mounted where nbgrader_config.py says the exchange is.
- Students' server config disables the formgrader; the instructor's turns it back on, from
  the folder the hub's pre_spawn_hook names.
- The Python embedded in the YAML (nbgrader config, hub config) parses.
"""

import ast
import copy
import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
FORMGRADER = "nbgrader.server_extensions.formgrader"

# The chart's defaults (jupyterhub/values.yaml) for the keys its schema requires at the
# top level: Helm validates the user's values merged over these.
CHART_DEFAULTS = {
    "imagePullSecrets": [],
    "hub": {"baseUrl": "/"},
    "proxy": {},
    "singleuser": {},
    "ingress": {"enabled": False},
    "prePuller": {"hook": {"enabled": True}, "continuous": {"enabled": True}},
    "custom": {},
    "cull": {"enabled": True},
    "debug": {"enabled": False},
    "rbac": {"create": True},
    "global": {"safeToShowValues": False},
}


def merged(base, over):
    """Helm's merge: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.cache
def chart_validator():
    """A validator of the schema's declared draft (Draft 7)."""
    schema = yaml.safe_load((DEPLOY / "z2jh-values.schema.yaml").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(values):
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in chart_validator().iter_errors(merged(CHART_DEFAULTS, values))
    ]


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


def extra_file(values, mount_path):
    files = values["singleuser"]["extraFiles"]
    (entry,) = [f for f in files.values() if f["mountPath"] == mount_path]
    return entry


def assigned(source):
    """`c.Section.trait = <literal>` assignments of a config file: {"Section.trait": value}."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = node.targets[0]
            if isinstance(target.value, ast.Attribute):
                key = f"{target.value.attr}.{target.attr}"
                try:
                    out[key] = ast.literal_eval(node.value)
                except ValueError:
                    out[key] = ast.unparse(node.value)
    return out


def test_values_validate_against_the_chart_schema(values):
    assert schema_errors(values) == []


def test_the_schema_rejects_unknown_keys_and_wrong_types(values):
    typo = merged(values, {"singleuser": {"storage": {"typo": 1}}})
    assert any("typo" in e for e in schema_errors(typo))
    wrong_type = merged(values, {"singleuser": {"cpu": {"limit": "two"}}})
    assert any(e.startswith("singleuser.cpu.limit") for e in schema_errors(wrong_type))


def test_embedded_python_parses(values):
    sources = {name: code for name, code in values["hub"]["extraConfig"].items()}
    for name, entry in values["singleuser"]["extraFiles"].items():
        if entry["mountPath"].endswith(".py"):
            sources[name] = entry["stringData"]
    assert len(sources) == 3
    for name, code in sources.items():
        ast.parse(code, filename=name)


def test_exchange_volume_is_mounted_where_nbgrader_looks(values):
    config = assigned(extra_file(values, "/etc/jupyter/nbgrader_config.py")["stringData"])
    assert config["CourseDirectory.course_id"] == "multimodal"
    storage = values["singleuser"]["storage"]
    (mount,) = [m for m in storage["extraVolumeMounts"] if m["name"] == "nbgrader-exchange"]
    assert mount["mountPath"] == config["Exchange.root"]
    (volume,) = [v for v in storage["extraVolumes"] if v["name"] == "nbgrader-exchange"]
    assert volume["persistentVolumeClaim"]["claimName"] == "nbgrader-exchange"


def test_students_homes_are_their_own(values):
    storage = values["singleuser"]["storage"]
    assert storage["type"] == "dynamic"
    assert storage.get("static") is None
    # the exchange is the only volume shared between users
    assert [v["name"] for v in storage["extraVolumes"]] == ["nbgrader-exchange"]


def test_formgrader_off_for_students_on_for_the_instructor(values):
    students = extra_file(values, "/etc/jupyter/jupyter_server_config.json")["data"]
    assert students["ServerApp"]["jpserver_extensions"][FORMGRADER] is False

    # the hook points instructors' pods at a config folder that turns it back on
    hook = values["hub"]["extraConfig"]["instructorFormgrader.py"]
    folders = [
        n.value
        for n in ast.walk(ast.parse(hook))
        if isinstance(n, ast.Constant) and str(n.value).startswith("/etc/jupyter/")
    ]
    assert folders == ["/etc/jupyter/instructor"]
    instructor = extra_file(values, f"{folders[0]}/jupyter_server_config.json")["data"]
    assert instructor["ServerApp"]["jpserver_extensions"][FORMGRADER] is True
    groups = values["hub"]["config"]["JupyterHub"]["load_groups"]
    assert groups["instructors"]["users"]
    assert '"instructors"' in hook
