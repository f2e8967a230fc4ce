"""settings.py is the ONE place that reads the environment, and it reads it at call time.

The source check reads every module of the package (AST), so it also covers modules no test
imports. Writes meant for child processes (or for a library's own variable) are not reads
of a setting; the few places that copy the whole environment for a child are allow-listed
with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mfg_assets.settings import PACKAGE_DIR, Settings, get_settings

SETTINGS = PACKAGE_DIR / "settings.py"
README = PACKAGE_DIR.parent / "README.md"

# "path:function" -> why it may touch os.environ. Every entry is a child environment or a
# save/restore, never a setting read.
ALLOWED: dict[str, str] = {
    "loop/run.py:_environment": "saves and restores the variables it sets for the loop",
    "loop/run.py:run_loop": "the child processes' environment: this one plus the loop's",
    "loop/services.py:start_mosquitto": "the private broker's child environment",
    "stack/launch.py:_clean_env": "the stack's children start from a scrubbed copy",
    "ml/registry.py:<module>": "a default for MLflow's own variable (setdefault, for MLflow)",
    "console.py:quiet_third_parties": "a default for MLflow's log level in child processes "
    "(setdefault, for MLflow)",
    "ml/vision.py:_quiet_threads": "defaults for the OpenMP/MKL pools of worker processes "
    "(setdefault, for those libraries)",
}


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, enclosing function) of every read of the process environment.

    A read: ``os.environ`` used in any way but as the target of an item assignment or
    deletion, ``os.environ.update``/``pop``/``clear`` (writes), and any ``os.getenv`` call;
    the same for ``environ``/``getenv`` imported from ``os``.
    """
    tree = ast.parse(source)
    aliases = {"os.environ", "os.getenv", "os.environb", "os.getenvb"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            aliases |= {a.asname or a.name for a in node.names
                        if a.name in ("environ", "getenv", "environb", "getenvb")}
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def dotted(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and (base := dotted(node.value)):
            return f"{base}.{node.attr}"
        return None

    def function(node: ast.AST) -> str:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return "<module>"

    found = []
    for node in ast.walk(tree):
        if dotted(node) not in aliases:
            continue
        parent = parents.get(node)
        write = (
            isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store | ast.Del)
        ) or (
            isinstance(parent, ast.Attribute) and parent.attr in ("update", "pop", "clear")
        )
        if not write:
            found.append((node.lineno, function(node)))
    return sorted(found)


def _reads(source: str) -> list[str]:
    return [f"{line}:{func}" for line, func in environment_reads(source)]


def test_the_check_finds_reads_and_lets_writes_pass():
    reads = (
        "import os\n"
        "from os import environ as env, getenv\n"
        "a = os.environ.get('A')\n"
        "b = os.getenv('B')\n"
        "def f():\n    return os.environ['C']\n"
        "d = env.get('D')\n"
        "e = getenv('E')\n"
        "g = dict(os.environ)\n"
        "h = os.environ.setdefault('H', '1')\n"
    )
    assert _reads(reads) == ["3:<module>", "4:<module>", "6:f", "7:<module>", "8:<module>",
                             "9:<module>", "10:<module>"]
    writes = (
        "import os\n"
        "os.environ['A'] = '1'\n"
        "del os.environ['A']\n"
        "os.environ.update({'B': '2'})\n"
        "os.environ.pop('B', None)\n"
        "x = os.path.join('a', 'b')\n"
    )
    assert _reads(writes) == []


def package_reads() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path == SETTINGS:
            continue
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        for line, func in environment_reads(path.read_text()):
            out.setdefault(f"{rel}:{func}", []).append(line)
    return out


def test_only_settings_reads_the_environment():
    offenders = {k: v for k, v in package_reads().items() if k not in ALLOWED}
    assert not offenders, (
        "environment read outside settings.py (line numbers): "
        f"{offenders}. Add a field to mfg_assets.settings.Settings and call get_settings()."
    )


def test_the_allow_list_names_what_exists():
    """An entry outlives its code only by mistake: remove it when the code goes."""
    assert not set(ALLOWED) - set(package_reads()), sorted(set(ALLOWED) - set(package_reads()))


def test_a_changed_variable_takes_effect_on_the_next_call(monkeypatch, tmp_path):
    """No reimport, no fresh interpreter: each get_settings() reads the environment now."""
    from mfg_assets.settings import rollout_cadence, sensor_interval
    from mfg_assets.uns.broker import TlsOptions, parse_broker_url

    for name in ("MFG_SENSOR_INTERVAL_S", "MFG_ROLLOUT_MIN_PREDICTIONS", "MFG_BROKER_USERNAME",
                 "MFG_BROKER_PASSWORD", "MFG_BROKER_CA", "MFG_ALERT_WEBHOOK_URL",
                 "MFG_BUNDLE_STORE", "MFG_METRICS_HOST", "MFG_ROLLOUT_CRON",
                 "MFG_EDGE_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MFG_DATA_DIR", str(tmp_path / "one"))
    before = get_settings()
    assert before.bundle_store_uri == str(tmp_path / "one" / "bundles")
    assert (sensor_interval(300), rollout_cadence()) == (300, "*/10 * * * *")
    assert parse_broker_url("mqtt://h").username is None and TlsOptions.from_env().ca_file is None

    monkeypatch.setenv("MFG_DATA_DIR", str(tmp_path / "two"))
    monkeypatch.setenv("MFG_SENSOR_INTERVAL_S", "5")
    monkeypatch.setenv("MFG_ROLLOUT_CRON", "* * * * *")
    monkeypatch.setenv("MFG_ROLLOUT_MIN_PREDICTIONS", "20")
    monkeypatch.setenv("MFG_BROKER_USERNAME", "plant")
    monkeypatch.setenv("MFG_BROKER_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("MFG_BROKER_CA", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("MFG_ALERT_WEBHOOK_URL", "http://hooks.invalid/x")
    monkeypatch.setenv("MFG_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("MFG_EDGE_SIGNING_KEY", str(tmp_path / "key.pem"))
    after = get_settings()
    assert after.data_dir == (tmp_path / "two").resolve()
    assert after.bundle_store_uri == str((tmp_path / "two").resolve() / "bundles")
    assert (sensor_interval(300), rollout_cadence()) == (5, "* * * * *")
    assert after.rollout.min_predictions == 20 and after.rollout.min_labelled is None
    assert after.alerts.webhook_url == "http://hooks.invalid/x"
    assert after.metrics_host == "0.0.0.0"
    assert after.edge.signing_key == str(tmp_path / "key.pem")
    broker = parse_broker_url("mqtt://h")
    assert (broker.username, broker.password) == ("plant", "s3cret-pw")
    assert parse_broker_url("mqtt://u:p@h").username == "u"  # the URL wins
    assert TlsOptions.from_env().ca_file == tmp_path / "ca.pem"
    monkeypatch.setenv("MFG_BUNDLE_STORE", "s3://bundles/p")
    assert get_settings().bundle_store_uri == "s3://bundles/p"


def test_gateway_and_edge_take_their_settings_when_built(monkeypatch, tmp_path):
    from mfg_assets.edge.store import default_store_uri
    from mfg_assets.gateway.config import GatewayConfig

    monkeypatch.setenv("MFG_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("MFG_BUNDLE_STORE", str(tmp_path / "store"))
    assert GatewayConfig("mqtt://127.0.0.1:1").metrics_host == "0.0.0.0"
    assert default_store_uri() == str(tmp_path / "store")
    monkeypatch.delenv("MFG_METRICS_HOST")
    monkeypatch.delenv("MFG_BUNDLE_STORE")
    monkeypatch.setenv("MFG_DATA_DIR", str(tmp_path))
    assert GatewayConfig("mqtt://127.0.0.1:1").metrics_host == "127.0.0.1"
    assert default_store_uri() == str(tmp_path.resolve() / "bundles")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MFG_SENSOR_INTERVAL_S", "fast", "MFG_SENSOR_INTERVAL_S='fast': expected a whole number"),
    ("MFG_ROLLOUT_MIN_LABELLED", "0", "MFG_ROLLOUT_MIN_LABELLED='0': must be at least 1"),
    ("MFG_DRIFT_RETRAIN_BUDGET", "-2", "MFG_DRIFT_RETRAIN_BUDGET='-2': must be at least 1"),
    ("MFG_RUN_EXECUTOR", "threads", "MFG_RUN_EXECUTOR='threads': expected one of"),
])
def test_a_bad_value_is_an_error_that_names_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        get_settings()


def test_secrets_never_appear_in_the_settings_repr(monkeypatch):
    secrets = {"AWS_SECRET_ACCESS_KEY": "aws-secret-value", "AWS_ACCESS_KEY_ID": "akid-value",
               "MFG_BROKER_PASSWORD": "broker-secret-value",
               "MFG_ALERT_WEBHOOK_URL": "https://hooks.invalid/token-value"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.storage_options["aws_secret_access_key"] == "aws-secret-value"
    text = repr(settings)
    assert not [v for v in secrets.values() if v in text], text


def settings_variables() -> set[str]:
    """Every variable name settings.py reads: string literals handed to its readers, and
    the AWS_* names of the object-store table."""
    tree = ast.parse(SETTINGS.read_text())
    readers = {"_env", "_whole", "_path"}
    names = {
        node.args[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in readers and node.args and isinstance(node.args[0], ast.Constant)
    }
    from mfg_assets.settings import AWS_OPTIONS

    return names | set(AWS_OPTIONS)


def test_the_readme_configuration_table_lists_every_variable():
    text = README.read_text()
    section = text[text.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)]
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.M))
    assert len(settings_variables()) > 30
    assert settings_variables() == rows, (
        f"missing from the table: {sorted(settings_variables() - rows)}; "
        f"in the table but never read: {sorted(rows - settings_variables())}"
    )


def test_settings_is_a_light_import():
    """The edge runtime reads settings too: settings.py imports the standard library only."""
    tree = ast.parse(SETTINGS.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= {"__future__", "os", "dataclasses", "datetime", "pathlib"}, modules
    assert isinstance(get_settings(), Settings) and Path(get_settings().data_dir).is_absolute()
