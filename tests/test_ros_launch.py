"""Static checks of the ROS 2 package `ros_ws/src/robot_rl_ros`: its launch files, parameter files,
setup.py/package.xml, and the topic/service contract table in `ros_ws/README.md`.

Neither rclpy nor `launch` is needed: launch files are parsed with `ast`, launch arguments are
evaluated with their defaults, and each node's parameters are collected from its module's
`declare_parameter(...)` / `string_list(...)` calls. What the launch files share lives in
`robot_rl_ros/launch_common.py`: its node builders (functions returning one call, down to `Node(...)`)
are expanded into the launch file that calls them, and `argument(...)` reads its shared defaults."""

from __future__ import annotations

import ast
import configparser
import copy
import glob
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from robot_rl.ros import contract as ros_contract

REPO = Path(__file__).resolve().parents[1]
WS = REPO / "ros_ws"
PKG = WS / "src" / "robot_rl_ros"
MODULES = PKG / "robot_rl_ros"
CONFIG = PKG / "config"
LAUNCH_FILES = sorted((PKG / "launch").glob("*.launch.py"))
SHARED = MODULES / "launch_common.py"  # what the launch files share
SHARED_MODULE = "robot_rl_ros.launch_common"
EXECUTABLES = {  # console script -> module
    "robot_bridge": "robot_rl_ros.bridge",
    "actor": "robot_rl_ros.actor",
    "learner": "robot_rl_ros.learner",
    "reward_classifier": "robot_rl_ros.reward_classifier",
    "teleop": "robot_rl_ros.teleop",
    "console": "robot_rl_ros.console",
}
UNKNOWN = object()  # a value this static evaluation cannot compute (e.g. a PythonExpression)


# ---------------------------------------------------------------------------------------- setup.py
@lru_cache
def setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((PKG / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"]
    assert len(calls) == 1, "setup.py must call setup(...) once"
    return {kw.arg: kw.value for kw in calls[0].keywords}


def constant(expr: ast.expr, names: dict[str, ast.expr] | None = None):
    """A literal (or a Name bound to one in `names`); f-strings with such names are rendered."""
    if isinstance(expr, ast.Name) and names and expr.id in names:
        return constant(names[expr.id], names)
    if isinstance(expr, ast.JoinedStr):
        return "".join(str(constant(v.value if isinstance(v, ast.FormattedValue) else v, names)) for v in expr.values)
    return ast.literal_eval(expr)


@lru_cache
def setup_names() -> dict[str, ast.expr]:
    tree = ast.parse((PKG / "setup.py").read_text())
    return {
        n.targets[0].id: n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
    }


def console_scripts() -> dict[str, str]:
    """script name -> "module:function" from setup.py's entry_points."""
    entry_points = constant(setup_keywords()["entry_points"], setup_names())
    scripts = {}
    for line in entry_points["console_scripts"]:
        name, target = (part.strip() for part in line.split("="))
        assert name not in scripts, f"console script {name} listed twice"
        scripts[name] = target
    return scripts


def data_files() -> dict[str, list[str]]:
    """install destination -> the package-relative files it installs (globs expanded)."""
    out: dict[str, list[str]] = {}
    for entry in setup_keywords()["data_files"].elts:
        dest, sources = entry.elts
        dest = constant(dest, setup_names())
        if isinstance(sources, ast.Call) and getattr(sources.func, "id", None) == "glob":
            pattern = constant(sources.args[0], setup_names())
            files = sorted(str(Path(p)) for p in glob.glob(pattern, root_dir=PKG))
        else:
            files = [constant(s, setup_names()) for s in sources.elts]
        out.setdefault(dest, []).extend(files)
    return out


# ------------------------------------------------------------------------- node module parameters
def infer_type(expr: ast.expr | None):
    """The Python type of a parameter default as rclpy would type it; None when not known statically."""
    if expr is None:
        return None
    if isinstance(expr, ast.Constant):
        return type(expr.value)
    if isinstance(expr, ast.Attribute) and expr.attr.endswith("_ARRAY"):  # Parameter.Type.STRING_ARRAY
        return list
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "contract":
        return type(getattr(ros_contract, expr.attr))
    if isinstance(expr, (ast.Compare, ast.BoolOp)) or (isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not)):
        return bool
    return None


def collect_parameters(tree: ast.AST, helpers: dict[str, dict] | None = None) -> dict[str, type | None]:
    """Parameter name -> type declared anywhere under `tree`: `x.declare_parameter("name", default)`,
    `string_list(node, "name")`, calls of local wrappers (`p = lambda name, default:
    self.declare_parameter(name, default).value`) and calls of `helpers` (functions of common.py that
    declare parameters themselves, e.g. node_config -> overrides)."""
    wrappers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) and len(node.targets) == 1:
            first = node.value.args.args[0].arg if node.value.args.args else None
            if any(
                isinstance(c, ast.Call)
                and getattr(c.func, "attr", None) == "declare_parameter"
                and c.args
                and isinstance(c.args[0], ast.Name)
                and c.args[0].id == first
                for c in ast.walk(node.value.body)
            ):
                wrappers.add(node.targets[0].id)
    found: dict[str, type | None] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        args = node.args
        if func == "declare_parameter" and args and isinstance(args[0], ast.Constant):
            found[args[0].value] = infer_type(args[1] if len(args) > 1 else None)
        elif func in wrappers and args and isinstance(args[0], ast.Constant):
            found[args[0].value] = infer_type(args[1] if len(args) > 1 else None)
        elif func == "string_list" and len(args) > 1 and isinstance(args[1], ast.Constant):
            found[args[1].value] = list
        elif helpers and func in helpers:
            found.update(helpers[func])
    return found


@lru_cache
def common_helpers() -> dict[str, dict]:
    tree = ast.parse((MODULES / "common.py").read_text())
    return {
        f.name: params
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        if (params := collect_parameters(f)) and f.name != "string_list"
    }


@lru_cache
def node_parameters(executable: str) -> dict[str, type | None]:
    module = console_scripts()[executable].split(":")[0]
    path = PKG / Path(*module.split(".")).with_suffix(".py")
    return collect_parameters(ast.parse(path.read_text()), common_helpers())


# ------------------------------------------------------------------------------------ launch files
@lru_cache
def shared_module() -> tuple[dict[str, ast.expr], dict[str, ast.FunctionDef]]:
    """launch_common.py: (its module-level `NAME = value` constants, its functions)."""
    tree = ast.parse(SHARED.read_text(), filename=str(SHARED))
    constants = {
        n.targets[0].id: n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
    }
    return constants, {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}


def shared_arguments() -> dict[str, tuple[str, str]]:
    """launch_common.ARGUMENTS: name -> (default, description)."""
    return ast.literal_eval(shared_module()[0]["ARGUMENTS"])


def returned_call(function: ast.FunctionDef) -> ast.Call | None:
    """The call a function's body (a docstring and one `return call(...)`) returns; None otherwise."""
    body = [s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call):
        return body[0].value
    return None


class _Substitute(ast.NodeTransformer):
    def __init__(self, names: dict[str, ast.expr]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.names:
            return copy.deepcopy(self.names[node.id])
        return node


def expand(call: ast.Call, imported: set[str]) -> ast.Call:
    """A call of a launch_common builder imported by the launch file, expanded (its arguments bound in
    the call it returns) until it is a call of something else, e.g. Node(...); other calls unchanged.
    Keywords left None (an optional argument not given) are dropped."""
    constants, functions = shared_module()
    while (name := getattr(call.func, "id", None)) in imported and name in functions:
        function = functions[name]
        body = returned_call(function)
        if body is None:
            break
        params = [a.arg for a in function.args.args]
        bound = dict(zip(params[len(params) - len(function.args.defaults) :], function.args.defaults))
        bound |= dict(zip(params, call.args)) | {k.arg: k.value for k in call.keywords}
        assert set(bound) == set(params), f"{name}(...) call binds {sorted(bound)}, not {params}"
        call = _Substitute(constants | bound).visit(copy.deepcopy(body))
        call.keywords = [k for k in call.keywords if not (isinstance(k.value, ast.Constant) and k.value.value is None)]
    return call


def shared_imports(tree: ast.AST) -> set[str]:
    """The names a launch file imports from launch_common."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == SHARED_MODULE
        for alias in node.names
    }


class LaunchFile:
    """A launch file's AST: its declared arguments, LaunchConfiguration uses and Node(...) calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.names: dict[str, ast.expr] = {}  # simple `name = expr` bindings, module and function level
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                assert node.targets[0].id not in self.names, f"{path.name}: {node.targets[0].id} bound twice"
                self.names[node.targets[0].id] = node.value
        self.arguments: dict[str, ast.expr | None] = {}
        self.nodes: list[dict[str, ast.expr]] = []
        self.processes: list[list[ast.expr]] = []  # ExecuteProcess command lines, e.g. robot-rl deploy ...
        self.shared = shared_imports(self.tree)
        for call in ast.walk(self.tree):
            if not isinstance(call, ast.Call):
                continue
            if getattr(call.func, "id", None) == "argument" and "argument" in self.shared:
                name = constant(call.args[0])
                assert name not in self.arguments, f"{path.name}: launch argument {name} declared twice"
                given = (
                    call.args[1]
                    if len(call.args) > 1
                    else next((k.value for k in call.keywords if k.arg == "default"), None)
                )
                shared = shared_arguments().get(name, (None, None))[0]
                self.arguments[name] = (
                    given if given is not None else (None if shared is None else ast.Constant(shared))
                )
                continue
            node = expand(call, self.shared)
            func = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if func == "DeclareLaunchArgument":
                name = constant(node.args[0])
                assert name not in self.arguments, f"{path.name}: launch argument {name} declared twice"
                self.arguments[name] = next((k.value for k in node.keywords if k.arg == "default_value"), None)
            elif func == "Node":
                assert not node.args, f"{path.name}:{call.lineno}: pass Node arguments by keyword"
                assert all(k.arg for k in node.keywords), f"{path.name}:{call.lineno}: no **kwargs in Node(...)"
                self.nodes.append({k.arg: k.value for k in node.keywords} | {"lineno": call.lineno})
            elif func == "ExecuteProcess":
                cmd = self.resolve(next(k.value for k in node.keywords if k.arg == "cmd"))
                items: list[ast.expr] = []
                for item in cmd.elts:  # `*arguments` of a builder: its list, spliced in
                    spliced = self.resolve(item.value) if isinstance(item, ast.Starred) else None
                    items.extend(spliced.elts if spliced is not None else [item])
                self.processes.append(items)
        # arguments read where it matters: LaunchConfigurations outside `name = ...` bindings, and
        # through the bindings those places load (a binding nothing loads does not count)
        self.used, live = self._scan(self.tree)
        seen: set[str] = set()
        while live - seen:
            name = (live - seen).pop()
            seen.add(name)
            if name in self.names:
                configs, names = self._scan(self.names[name])
                self.used |= configs
                live |= names

    def _scan(self, root: ast.AST) -> tuple[set[str], set[str]]:
        """(LaunchConfiguration names, loaded variable names) under `root`, not inside bindings."""
        bound = {id(v) for v in self.names.values()}
        configs, names = set(), set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in bound and node is not root:
                continue
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "LaunchConfiguration":
                configs.add(constant(node.args[0]))
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                names.add(node.id)
            stack.extend(ast.iter_child_nodes(node))
        return configs, names

    def resolve(self, expr: ast.expr) -> ast.expr:
        while isinstance(expr, ast.Name) and expr.id in self.names:
            expr = self.names[expr.id]
        return expr

    def evaluate(self, expr: ast.expr | None):
        """The string a substitution expression gives with every launch argument at its default;
        None for a required argument (no default), UNKNOWN where it cannot be computed statically."""
        expr = self.resolve(expr) if expr is not None else None
        if expr is None:
            return None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Call) and getattr(expr.func, "id", None) == "LaunchConfiguration":
            return self.evaluate(self.arguments[constant(expr.args[0])])
        if isinstance(expr, (ast.List, ast.Tuple)):
            parts = [self.evaluate(e) for e in expr.elts]
            if any(p is None for p in parts):
                return None
            return UNKNOWN if any(p is UNKNOWN for p in parts) else "".join(parts)
        return UNKNOWN

    def parameters(self, node: dict[str, ast.expr]) -> tuple[list[str], dict[str, ast.expr]]:
        """(parameter files named in the node's parameters=[...], its inline parameter dict)."""
        files: list[str] = []
        inline: dict[str, ast.expr] = {}
        entries = self.resolve(node["parameters"])
        assert isinstance(entries, ast.List), f"{self.path.name}:{node['lineno']}: parameters must be a list"
        for entry in map(self.resolve, entries.elts):
            if isinstance(entry, ast.Dict):
                for key, value in zip(entry.keys, entry.values):
                    assert isinstance(key, ast.Constant), (
                        f"{self.path.name}:{node['lineno']}: parameter names must be literals"
                    )
                    inline[key.value] = value
                continue
            yamls = [
                c.value
                for c in ast.walk(entry)
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value.endswith(".yaml")
            ]
            assert len(yamls) == 1, (
                f"{self.path.name}:{node['lineno']}: a parameters entry is neither a dict "
                f"nor one config/*.yaml file: {ast.unparse(entry)}"
            )
            files.append(yamls[0])
        return files, inline


@lru_cache
def launch_file(path: Path) -> LaunchFile:
    return LaunchFile(path)


def load_parameter_file(name: str) -> dict:
    path = CONFIG / name
    assert path.is_file(), f"config/{name} is referenced but does not exist"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and list(data) == ["/**"], f"config/{name}: use the `/**: ros__parameters:` form"
    assert list(data["/**"]) == ["ros__parameters"], f"config/{name}: `/**:` holds only ros__parameters"
    params = data["/**"]["ros__parameters"]
    assert isinstance(params, dict) and params, f"config/{name}: ros__parameters is empty"
    return params


def check_value(where: str, name: str, value, declared: type | None) -> None:
    """A parameter value as rclpy would receive it: typed like the node declares it; arrays are
    non-empty lists of one type (ROS cannot type an empty list)."""
    assert value is not None, f"{where}: {name} has no value (an empty string cannot be typed by ROS)"
    if isinstance(value, list):
        assert value, f"{where}: {name} is an empty list (ROS cannot type it: leave the parameter out)"
        assert len({type(v) for v in value}) == 1, f"{where}: {name} mixes types: {value}"
    if declared is not None:
        assert type(value) is declared, (
            f"{where}: {name}={value!r} is {type(value).__name__}, the node declares {declared.__name__}"
        )


NODES = [(path, i) for path in LAUNCH_FILES for i in range(len(launch_file(path).nodes))]


def node_id(item) -> str:
    path, i = item
    node = launch_file(path).nodes[i]
    return f"{path.name.removesuffix('.launch.py')}:{constant(node['executable'])}@{node['lineno']}"


# ------------------------------------------------------------------------------------------- tests
def test_package_files():
    assert {p.name for p in LAUNCH_FILES} >= {"sim_train.launch.py", "real_train.launch.py", "deploy.launch.py"}
    assert (PKG / "resource" / "robot_rl_ros").is_file()
    xml = ET.parse(PKG / "package.xml").getroot()
    assert xml.get("format") == "3" and xml.findtext("name") == "robot_rl_ros"
    assert xml.find("export").findtext("build_type") == "ament_python"
    exec_depends = {e.text for e in xml.findall("exec_depend")}
    missing = {
        "rclpy",
        "std_msgs",
        "sensor_msgs",
        "geometry_msgs",
        "std_srvs",
        "builtin_interfaces",
        "launch",
        "launch_ros",
        "python3-numpy",
    } - exec_depends
    assert not missing, f"package.xml lacks exec_depend {sorted(missing)}"
    assert "python3-pytest" in {e.text for e in xml.findall("test_depend")}
    assert constant(setup_keywords()["name"], setup_names()) == "robot_rl_ros"
    cfg = configparser.ConfigParser()
    cfg.read(PKG / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/robot_rl_ros"  # where `ros2 run` looks
    assert cfg["install"]["install_scripts"] == "$base/lib/robot_rl_ros"


def test_launch_files_share_their_common_definitions():
    """Every launch file declares its arguments and starts its nodes through launch_common (no Node or
    DeclareLaunchArgument of its own), and what launch_common shares is used by more than one of them."""
    constants, functions = shared_module()
    assert {"argument", "node", "config"} <= set(functions)
    builders = {name for name, f in functions.items() if returned_call(f) is not None}
    declared: dict[str, int] = {}
    used_builders: set[str] = set()
    for path in LAUNCH_FILES:
        lf = launch_file(path)
        assert {"argument", "node"} <= lf.shared, f"{path.name}: import argument and node from {SHARED_MODULE}"
        direct = {getattr(c.func, "id", None) for c in ast.walk(lf.tree) if isinstance(c, ast.Call)}
        assert not direct & {"Node", "DeclareLaunchArgument"}, (
            f"{path.name}: start nodes with node(...) and declare arguments with argument(...) from {SHARED_MODULE}"
        )
        for name in lf.arguments:
            declared[name] = declared.get(name, 0) + 1
        used_builders |= direct & builders
    shared = shared_arguments()
    assert all(description for _, description in shared.values())
    once = sorted(name for name in shared if declared.get(name, 0) < 2)
    assert not once, f"launch_common.ARGUMENTS {once} are declared by fewer than two launch files: keep them local"
    unused = sorted(
        builders
        - used_builders
        - {"config", "argument", "is_set"}
        - {
            name
            for f in functions.values()
            for c in ast.walk(f)
            if isinstance(c, ast.Call)
            for name in [getattr(c.func, "id", None)]
        }
    )
    assert not unused, f"launch_common builders no launch file uses: {unused}"
    assert constant(constants["PACKAGE"]) == "robot_rl_ros"


def test_console_scripts_are_the_node_modules():
    scripts = console_scripts()
    assert scripts == {name: f"{module}:main" for name, module in EXECUTABLES.items()}
    for name, target in scripts.items():
        module, function = target.split(":")
        path = PKG / Path(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"console script {name}: {path} does not exist"
        tree = ast.parse(path.read_text())
        functions = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert function in functions, f"{path.name} has no {function}()"


def test_setup_installs_marker_manifest_launch_and_config_files():
    installed = data_files()
    assert installed.get("share/ament_index/resource_index/packages") == ["resource/robot_rl_ros"]
    assert "package.xml" in installed.get("share/robot_rl_ros", [])
    launch = sorted(f"launch/{p.name}" for p in LAUNCH_FILES)
    assert sorted(installed.get("share/robot_rl_ros/launch", [])) == launch
    configs = sorted(f"config/{p.name}" for p in CONFIG.glob("*.yaml"))
    assert configs and sorted(installed.get("share/robot_rl_ros/config", [])) == configs


def test_node_modules_declare_parameters():
    """The parameter collection itself: the names each node documents (spot checks that fail when
    the collector misses a declaration style: wrapper lambda, string_list, node_config)."""
    bridge = node_parameters("robot_bridge")
    assert {"overrides", "mode", "cameras", "objects", "start_armed", "reliable_sensors", "seed"} <= set(bridge)
    actor = node_parameters("actor")
    assert {
        "overrides",
        "training_namespace",
        "actor_id",
        "policy",
        "deterministic",
        "num_demos",
        "episodes",
        "on_learner_lost",
        "learner_timeout_s",
        "max_steps_ahead",
        "outbox_episodes",
        "start_active",
    } <= set(actor)
    assert actor["learner_timeout_s"] is float and actor["overrides"] is list and actor["start_active"] is bool
    assert actor["training_namespace"] is str
    assert {"overrides", "training_namespace", "weights_period_s", "exit_when_done"} <= set(node_parameters("learner"))
    assert {"classifier", "robot_namespace"} <= set(node_parameters("reward_classifier"))
    assert {"device", "overrides", "robot_namespace", "rate_hz"} <= set(node_parameters("teleop"))
    console = node_parameters("console")
    assert {
        "host",
        "port",
        "token",
        "on_silence",
        "max_silence_s",
        "rate_hz",
        "training_namespace",
        "robot_namespaces",
    } <= set(console)
    assert console["port"] is int and console["rate_hz"] is float and console["robot_namespaces"] is list


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_are_declared_and_used(path):
    lf = launch_file(path)
    assert "generate_launch_description" in {f.name for f in lf.tree.body if isinstance(f, ast.FunctionDef)}
    assert lf.nodes, f"{path.name} starts no node"
    undeclared = lf.used - set(lf.arguments)
    assert not undeclared, f"{path.name}: LaunchConfiguration {sorted(undeclared)} without DeclareLaunchArgument"
    unused = set(lf.arguments) - lf.used
    assert not unused, f"{path.name}: launch arguments {sorted(unused)} are declared but never used"


@pytest.mark.parametrize("item", NODES, ids=node_id)
def test_node_runs_a_package_executable_with_declared_parameters(item):
    path, i = item
    lf = launch_file(path)
    node = lf.nodes[i]
    where = node_id(item)
    assert constant(node["package"]) == "robot_rl_ros", f"{where}: package must be robot_rl_ros"
    executable = constant(node["executable"])
    assert executable in console_scripts(), f"{where}: {executable} is not a console script of setup.py"
    assert "name" in node and constant(node["name"]), f"{where}: give the node a name"
    declared = node_parameters(executable)
    files, inline = lf.parameters(node)
    assert files, f"{where}: load the node's parameters from a config/*.yaml file"
    for name in files:
        for key, value in load_parameter_file(name).items():
            assert key in declared, f"{where}: config/{name} sets {key}, which {executable} does not declare"
            check_value(f"config/{name}", key, value, declared[key])
    conditional = "condition" in node
    for key, expr in inline.items():
        assert key in declared, f"{where}: parameter {key} is not declared by {executable}"
        expr = lf.resolve(expr)
        if isinstance(expr, ast.List):
            # a flat list holding a bare substitution is joined into ONE string by launch_ros: each
            # item must be a literal or a list of parts
            for item_expr in expr.elts:
                assert isinstance(item_expr, (ast.Constant, ast.List)), (
                    f"{where}: {key} item {ast.unparse(item_expr)} must be a string or a list of parts"
                )
            value = [lf.evaluate(e) for e in expr.elts]
            if any(v is UNKNOWN or v is None for v in value):
                continue
            value = [yaml.safe_load(v) for v in value]  # launch_ros reads each evaluated item as YAML
        elif isinstance(expr, ast.Constant):
            value = expr.value
        else:
            text = lf.evaluate(expr)
            if text is UNKNOWN or text is None:
                continue  # computed at launch, or a required argument (no default)
            value = yaml.safe_load(text)  # launch_ros types a substitution's result as YAML
            if value is None and conditional:
                continue  # the node only starts when its condition holds (e.g. a non-empty argument)
        check_value(where, key, value, declared[key])


def test_every_parameter_file_is_used():
    referenced = set()
    for path in LAUNCH_FILES:
        lf = launch_file(path)
        for node in lf.nodes:
            referenced.update(lf.parameters(node)[0])
    files = {p.name for p in CONFIG.glob("*.yaml")}
    assert referenced <= files, f"launch files load missing parameter files {sorted(referenced - files)}"
    assert files <= referenced, f"parameter files no launch file loads: {sorted(files - referenced)}"


def param_value(lf: LaunchFile, node: dict, key: str, default):
    """A node's parameter as launched with default arguments: inline, else from its files, else `default`."""
    files, inline = lf.parameters(node)
    if key in inline:
        return lf.evaluate(inline[key])
    values = [load_parameter_file(name)[key] for name in files if key in load_parameter_file(name)]
    return values[-1] if values else default


def evaluated_overrides(lf: LaunchFile, node: dict) -> list[str] | None:
    inline = lf.parameters(node)[1]
    if "overrides" not in inline:
        return None
    values = [lf.evaluate(e) for e in lf.resolve(inline["overrides"]).elts]
    return [v for v in values if isinstance(v, str)]  # computed-at-launch items are left out


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_hydra_overrides_compose_and_wire_the_nodes_together(path):
    """Each node's `overrides` (arguments at their defaults) is a valid robot_rl config, and the
    actor talks to the bridge (and the teleop node) this launch file starts."""
    from robot_rl.config import compose

    lf = launch_file(path)
    by_executable: dict[str, list[dict]] = {}
    for node in lf.nodes:
        by_executable.setdefault(constant(node["executable"]), []).append(node)
    composed = {}
    for node in lf.nodes:
        executable = constant(node["executable"])
        overrides = evaluated_overrides(lf, node)
        if overrides is None or executable == "teleop":
            continue
        cfg = compose("train", overrides)  # raises on an unknown group option or key
        composed.setdefault(executable, cfg)
    for cmd in lf.processes:  # robot-rl <command> key=value ...: the policy's process (deploy)
        words = [lf.evaluate(e) for e in cmd]
        assert words[0] == "robot-rl" and words[1] in ("deploy",), f"{path.name}: unexpected process {words[:2]}"
        composed["actor"] = compose(words[1], [w for w in words[2:] if isinstance(w, str)])
    assert "actor" in composed and "robot_bridge" in composed
    actor = composed["actor"]
    assert actor.robot.name == "ros", f"{path.name}: the actor needs robot=ros"
    namespaces = {lf.evaluate(n["namespace"]) for n in by_executable["robot_bridge"]}
    assert namespaces == {actor.robot.namespace}, (
        f"{path.name}: actor robot.namespace {actor.robot.namespace} != bridge namespace {namespaces}"
    )
    if "task" in actor:  # deploy takes its task from the policy file
        assert actor.task.name == composed["robot_bridge"].task.name
    if "learner" in composed:
        assert composed["learner"].task.name == actor.task.name
    if "learner" in by_executable:
        spaces = {
            param_value(lf, n, "training_namespace", ros_contract.DEFAULT_TRAINING_NAMESPACE)
            for n in by_executable["actor"] + by_executable["learner"]
        }
        assert len(spaces) == 1, f"{path.name}: actor and learner in different training namespaces {spaces}"
    for node in by_executable.get("teleop", []):
        assert actor.teleop.device == "ros", f"{path.name}: a teleop node needs the actor's teleop=ros"
        teleop_namespace = lf.evaluate(lf.parameters(node)[1]["robot_namespace"])
        assert teleop_namespace == actor.teleop.namespace, (
            f"{path.name}: teleop node publishes in {teleop_namespace}, the actor reads {actor.teleop.namespace}"
        )
    for node in by_executable.get("reward_classifier", []):
        watched = lf.evaluate(lf.parameters(node)[1]["robot_namespace"])
        assert watched == actor.robot.namespace, f"{path.name}: reward_classifier watches {watched}, not the robot"


def contract_tables() -> list[dict[str, tuple[str, ...]]]:
    """The README's `| Name | Type | QoS | From | To | Meaning |` tables: name -> (type, qos, from, to)."""
    tables, current = [], None
    for line in (WS / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells == ["Name", "Type", "QoS", "From", "To", "Meaning"]:
            current = {}
            tables.append(current)
        elif cells is None:
            current = None
        elif current is not None and set(line.replace("|", "").strip()) - set("-: "):
            assert len(cells) == 6, f"README contract row has {len(cells)} cells: {line}"
            name = cells[0].strip("`")
            assert name not in current, f"README lists {name} twice in one table"
            current[name] = (cells[1].strip("`"), cells[2], cells[3], cells[4])
    return tables


def test_readme_contract_tables_match_the_code():
    tables = contract_tables()
    assert len(tables) == 2, "ros_ws/README.md needs two contract tables: robot bridge, actor/learner"
    for table, endpoints in zip(tables, (ros_contract.ROBOT_ENDPOINTS, ros_contract.LEARNING_ENDPOINTS)):
        code = {e.name: (e.type, e.qos, e.source, e.sinks) for e in endpoints}
        assert not set(table) - set(code), f"README lists endpoints the code lacks: {sorted(set(table) - set(code))}"
        assert not set(code) - set(table), f"README misses endpoints: {sorted(set(code) - set(table))}"
        for name, row in table.items():
            assert row == code[name], f"README row {name}: {row} != code {code[name]}"
    assert {name for t in tables for name in t} == {e.name for e in ros_contract.ALL_ENDPOINTS}
    text = (WS / "README.md").read_text()
    for kind in {e.qos for e in ros_contract.ALL_ENDPOINTS}:
        assert f"\n| {kind} |" in text, f"README does not explain the QoS kind {kind}"
