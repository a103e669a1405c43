#!/usr/bin/env python3
"""A fake `modal` CLI for Switchyard's contract tests.

It accepts what the real CLI accepts for `deploy`, `app list` and `app stop`,
validates the app file it is asked to deploy (Python syntax, the decorators
and parameters Switchyard's template must produce), keeps deployed apps in
state.json next to itself and prints output shaped like the real CLI's. Every
invocation is logged to calls.jsonl; everything the real CLI would reject, or
that breaks Switchyard's app contract, goes to violations.jsonl.
"""
import ast
import json
import os
import random
import re
import string
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))


def path(name):
    return os.path.join(HERE, name)


def load(name, default):
    try:
        with open(path(name)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def save(name, value):
    temporary = path(name + ".tmp")
    with open(temporary, "w") as handle:
        json.dump(value, handle, indent=1)
    os.replace(temporary, path(name))


def append(name, value):
    with open(path(name), "a") as handle:
        handle.write(json.dumps(value) + "\n")


CONFIG = load("fake_modal.json", {})


def violation(message):
    append("violations.jsonl", {"argv": sys.argv[1:], "message": message})


def fail(message, code=1):
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)


def usage_error(message, command="modal"):
    violation("usage error: " + message)
    fail(
        "Usage: %s [OPTIONS] COMMAND [ARGS]...\nTry '%s --help' for help.\n\nError: %s"
        % (command, command, message),
        2,
    )


def parse(args, command, valued, flags):
    """Click-style parsing: positionals plus the declared options."""
    positional, options = [], {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            name, _, inline = arg.partition("=")
            canonical = valued.get(name)
            if canonical is not None:
                if inline:
                    options[canonical] = inline
                elif index + 1 < len(args):
                    index += 1
                    options[canonical] = args[index]
                else:
                    usage_error("Option '%s' requires an argument." % name, command)
            elif name in flags:
                options[flags[name]] = True
            else:
                usage_error("No such option: %s" % name, command)
        else:
            positional.append(arg)
        index += 1
    return positional, options


def check_environment(options):
    environment = options.get("env")
    if environment is not None and environment not in CONFIG.get("environments", ["main"]):
        fail("Error: Environment '%s' not found" % environment)
    return environment or "main"


def knob(name):
    """Consumes a one-shot knob written by the test."""
    knobs = load("knobs.json", {})
    queue = knobs.get(name) or []
    if not queue:
        return None
    value = queue.pop(0)
    knobs[name] = queue
    save("knobs.json", knobs)
    return value


GPU = re.compile(r"^(T4|L4|A10|L40S|A100|A100-40GB|A100-80GB|RTX-PRO-6000|H100!?|H200|B200\+?)(?::(\d+))?$")
DEPRECATED = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "allow_concurrent_inputs": "@modal.concurrent",
}


def dotted(node):
    if isinstance(node, ast.Attribute):
        return dotted(node.value) + "." + node.attr
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def literal(node, what):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError("%s must be a literal" % what)


def keywords(call):
    return {keyword.arg: keyword.value for keyword in call.keywords}


def check_app_file(source, name):
    """Returns the app's facts or raises ValueError with what is wrong."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ValueError("the app file is not valid Python: %s (line %s)" % (error.msg, error.lineno))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    if not any(isinstance(node, ast.Import) and any(alias.name == "modal" for alias in node.names) for node in tree.body):
        raise ValueError("the app file does not import modal")
    apps = [call for call in calls if dotted(call.func) == "modal.App"]
    if len(apps) != 1 or not apps[0].args:
        raise ValueError("the app file must create exactly one modal.App(<name>)")
    app_name = literal(apps[0].args[0], "the modal.App name")
    if name is not None and app_name != name:
        raise ValueError("modal.App(%r) does not match --name %r" % (app_name, name))
    pins = [call for call in calls if dotted(call.func).endswith(".pip_install")]
    if not any(call.args and str(literal(call.args[0], "pip_install")).startswith("vllm==") for call in pins):
        raise ValueError("the image does not pin vllm==<version>")
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.decorator_list]
    if len(functions) != 1:
        raise ValueError("the app file must define exactly one decorated function")
    function = functions[0]
    decorators = [(dotted(d.func) if isinstance(d, ast.Call) else dotted(d), d) for d in function.decorator_list]
    names = [name for name, _ in decorators]
    if names != ["app.function", "modal.concurrent", "modal.web_server"]:
        raise ValueError("decorators must be @app.function, @modal.concurrent, @modal.web_server (top to bottom), not %s" % names)
    options = keywords(decorators[0][1])
    for old, new in DEPRECATED.items():
        if old in options:
            raise ValueError("@app.function(%s=...) is deprecated; use %s" % (old, new))
    for required in ["image", "gpu", "scaledown_window", "min_containers", "max_containers", "timeout", "volumes"]:
        if required not in options:
            raise ValueError("@app.function is missing %s=" % required)
    gpu = literal(options["gpu"], "gpu")
    match = GPU.match(gpu) if isinstance(gpu, str) else None
    if not match:
        raise ValueError("gpu=%r is not a Modal GPU type" % (gpu,))
    count = int(match.group(2) or 1)
    if not 1 <= count <= (4 if match.group(1) == "A10" else 8):
        raise ValueError("gpu=%r asks for too many GPUs" % gpu)
    facts = {"gpu": gpu}
    for field, low, high in [("scaledown_window", 2, 1200), ("min_containers", 0, 1000), ("max_containers", 1, 1000), ("timeout", 1, 86400)]:
        value = literal(options[field], field)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError("%s=%r must be an integer in %d..%d" % (field, value, low, high))
        facts[field] = value
    if facts["min_containers"] > facts["max_containers"]:
        raise ValueError("min_containers exceeds max_containers")
    concurrent = keywords(decorators[1][1])
    if "max_inputs" not in concurrent or not isinstance(literal(concurrent["max_inputs"], "max_inputs"), int):
        raise ValueError("@modal.concurrent needs max_inputs=<int>")
    server = decorators[2][1]
    server_options = keywords(server)
    port = literal(server.args[0], "port") if server.args else literal(server_options.get("port", ast.Constant(None)), "port")
    if port != 8000:
        raise ValueError("@modal.web_server must listen on port 8000, not %r" % (port,))
    if not isinstance(literal(server_options.get("startup_timeout", ast.Constant(None)), "startup_timeout"), int):
        raise ValueError("@modal.web_server needs startup_timeout=<seconds>")
    if literal(server_options.get("requires_proxy_auth", ast.Constant(False)), "requires_proxy_auth") is not True:
        raise ValueError("@modal.web_server must set requires_proxy_auth=True (the endpoint would be public)")
    commands = [
        node.value for node in function.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)
    ]
    if len(commands) != 1:
        raise ValueError("the function must build one vllm command list")
    command = literal(commands[0], "the vllm command")
    if command[:2] != ["vllm", "serve"] or len(command) < 3:
        raise ValueError("the command must start with vllm serve <model>, not %r" % command[:3])
    flags = dict(zip(command[3::2], command[4::2]))
    if len(command[3:]) % 2:
        raise ValueError("vllm flags must come in pairs: %r" % command[3:])
    for flag, wanted in [("--host", "0.0.0.0"), ("--port", "8000")]:
        if flags.get(flag) != wanted:
            raise ValueError("vllm must get %s %s" % (flag, wanted))
    if not flags.get("--served-model-name"):
        raise ValueError("vllm must get --served-model-name")
    if not any(dotted(call.func) == "subprocess.Popen" for call in calls):
        raise ValueError("the function must start vllm with subprocess.Popen")
    facts.update(
        app_name=app_name,
        model_id=command[2],
        served_model_name=flags["--served-model-name"],
        revision=flags.get("--revision"),
        tensor_parallel_size=int(flags.get("--tensor-parallel-size", "1")),
    )
    return facts


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())


def deploy(args):
    positional, options = parse(args, "modal deploy", {"--name": "name", "-e": "env", "--env": "env", "--tag": "tag"}, {"--stream-logs": "stream_logs"})
    if len(positional) != 1:
        usage_error("modal deploy takes exactly one app file, got %r" % positional, "modal deploy")
    environment = check_environment(options)
    file = positional[0]
    if not os.path.isfile(file):
        violation("deploy of a missing file %s" % file)
        fail("Error: Invalid value for 'APP_REF': File '%s' does not exist." % file, 2)
    failure = knob("fail_deploy")
    if failure is not None:
        if failure.get("sleep"):
            time.sleep(failure["sleep"])
        sys.stdout.write(failure.get("stdout", ""))
        fail(failure.get("stderr", "Error"), failure.get("exit", 1))
    with open(file) as handle:
        source = handle.read()
    try:
        facts = check_app_file(source, options.get("name"))
    except ValueError as error:
        violation(str(error))
        fail("Error: %s" % error)
    name = options.get("name") or facts["app_name"]
    state = load("state.json", {"apps": []})
    live = [app for app in state["apps"] if app["name"] == name and app["environment"] == environment and app["state"] == "deployed"]
    if live:
        app = live[0]
        app["deploys"] += 1
    else:
        app_id = "ap-" + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(22))
        app = {"app_id": app_id, "name": name, "environment": environment, "state": "deployed",
               "created_at": now(), "stopped_at": None, "deploys": 1}
        state["apps"].append(app)
    app.update(facts)
    app["source"] = source
    save("state.json", state)
    workspace = CONFIG.get("workspace", "switchyard-test")
    url = "%s/%s" % (CONFIG["url_base"].rstrip("/"), name)
    print("\u2713 Initialized. View run at https://modal.com/apps/%s/%s/%s" % (workspace, environment, app["app_id"]))
    print("\u2713 Created objects.")
    print("\u251c\u2500\u2500 \U0001F528 Created mount %s" % file)
    print("\u2514\u2500\u2500 \U0001F528 Created web function serve => %s" % url)
    print("\u2713 App deployed in 1.234s! \U0001F389")
    print()
    print("View Deployment: https://modal.com/apps/%s/%s/deployed/%s" % (workspace, environment, name))


def app_list(args):
    _, options = parse(args, "modal app list", {"-e": "env", "--env": "env"}, {"--json": "json"})
    environment = check_environment(options)
    tasks = load("knobs.json", {}).get("tasks", {})
    rows = []
    for app in load("state.json", {"apps": []})["apps"]:
        if app["environment"] != environment:
            continue
        running = tasks.get(app["name"], app.get("min_containers", 0)) if app["state"] == "deployed" else 0
        rows.append({"App ID": app["app_id"], "Description": app["name"], "State": app["state"],
                     "Tasks": str(running), "Created at": app["created_at"], "Stopped at": app["stopped_at"]})
    if options.get("json"):
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print("%(App ID)s  %(Description)s  %(State)s  %(Tasks)s" % row)


def app_stop(args):
    positional, options = parse(args, "modal app stop", {"-e": "env", "--env": "env", "-n": "name", "--name": "name"}, {})
    environment = check_environment(options)
    wanted = positional[0] if positional else options.get("name")
    if not wanted or len(positional) > 1:
        usage_error("modal app stop takes one app name or id", "modal app stop")
    state = load("state.json", {"apps": []})
    for app in state["apps"]:
        if app["environment"] == environment and app["state"] == "deployed" and wanted in (app["name"], app["app_id"]):
            app["state"] = "stopped"
            app["stopped_at"] = now()
            save("state.json", state)
            return
    fail("Error: Could not find a deployed app named '%s'." % wanted)


def main(argv):
    if argv[:1] == ["--version"]:
        print("modal client version: 1.1.0 (switchyard fake)")
        return
    token_id = os.environ.get("MODAL_TOKEN_ID", "")
    token_secret = os.environ.get("MODAL_TOKEN_SECRET", "")
    append("calls.jsonl", {"argv": argv, "token_id": token_id, "has_secret": bool(token_secret)})
    if not token_id or not token_secret:
        violation("the CLI was run without MODAL_TOKEN_ID and MODAL_TOKEN_SECRET")
        fail("Token missing. Could not authenticate client. If you have token credentials, see modal.com/docs/reference/modal.config for setup help. If you are a new user, register an account at modal.com, then run `modal token new`.")
    if token_id != CONFIG.get("token_id") or token_secret != CONFIG.get("token_secret"):
        fail("Error: Token validation failed: the token id or secret is invalid.")
    if argv[:1] == ["deploy"]:
        deploy(argv[1:])
    elif argv[:2] == ["app", "list"]:
        app_list(argv[2:])
    elif argv[:2] == ["app", "stop"]:
        app_stop(argv[2:])
    else:
        usage_error("No such command %r." % " ".join(argv[:2]))


if __name__ == "__main__":
    main(sys.argv[1:])
