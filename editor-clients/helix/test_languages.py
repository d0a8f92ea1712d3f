#!/usr/bin/env python3
"""Checks editor-clients/helix/languages.toml (and example-project/.helix/languages.toml)
against the kbridge CLI, and plays Helix's launches through the real kbridge.

1. They parse as TOML, in the shape Helix reads (template arg values may only be strings,
   string lists or booleans; `{N}` must name a completion; `bridge.*` keys must be keys
   of the launch schema's flat `bridge` keys), for python, rust, c, cpp, go.
2. Every subcommand and flag a debugger entry passes exists in `kbridge --help` /
   `kbridge <sub> --help`, and every `--debugger` value is a preset of the launch schema.
3. The Python template, filled in as Helix fills it (and sent as Helix sends it: only the
   template's args plus `cwd`, no `type` or `name`), runs env_probe.py through `kbridge
   dap` and debugpy to the end, with kbridge's GRPC_DNS_RESOLVER=native in its environment.
4. Bridged, on the fixture cluster (`kube-fixture serve --demo`): the "bridged to a
   service" template answered `todo-api`, `todo` and a local port, and the example
   project's flags (`--service todo-api --namespace todo`), each stop at a breakpoint in a
   program that sees the pod's Secret (API_KEY), and leave the Deployment's pod template
   as it was. Needs root and `kube-fixture`, `kbridge-agent` built next to kbridge
   (`cargo build --workspace --bins`), and kubectl; skipped otherwise, with the reason.

Helix's rules (helix-term/src/commands/dap.rs, `debug_parameter_prompt` and
`dap_start_impl`): an empty answer takes the completion's `default` (else stays empty);
answers to `filename`/`directory` prompts are made absolute when the path exists; `{N}` is
replaced in strings and string lists; a value that is all digits is sent as a number;
`cwd` is set to Helix's working directory.

Needs Python >= 3.11 (tomllib) and a built kbridge (KBRIDGE_BIN, else target/debug/kbridge).
"""

import atexit
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LANGUAGES = HERE / "languages.toml"
PROJECT_LANGUAGES = HERE / "example-project" / ".helix" / "languages.toml"
SCHEMA = REPO / "config-schema" / "schema" / "launch.json"
KBRIDGE = Path(os.environ.get("KBRIDGE_BIN", REPO / "target" / "debug" / "kbridge")).resolve()
EXPECTED_LANGUAGES = {"python", "rust", "c", "cpp", "go"}

results = []


class Skip(Exception):
    """The test cannot run here; the message says why."""


def test(fn):
    try:
        fn()
        results.append(True)
        print(f"ok - {fn.__doc__}")
    except Skip as reason:
        print(f"ok - {fn.__doc__} # SKIP {reason}")
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        results.append(False)
        print(f"not ok - {fn.__doc__}\n    {type(e).__name__}: {e}")
    return fn


def load(path=LANGUAGES):
    with open(path, "rb") as f:
        return tomllib.load(f)


def debuggers(path=LANGUAGES):
    return {lang["name"]: lang["debugger"] for lang in load(path)["language"] if "debugger" in lang}


def every_debugger():
    """(file name, language, debugger entry) for both files."""
    for path in (LANGUAGES, PROJECT_LANGUAGES):
        for lang, dbg in debuggers(path).items():
            yield path.relative_to(HERE), lang, dbg


def flat_key_pattern():
    """The launch schema's pattern of the flat `bridge.*` keys."""
    patterns = json.loads(SCHEMA.read_text()).get("patternProperties", {})
    assert len(patterns) == 1, f"expected one pattern property for the flat bridge keys: {patterns}"
    return re.compile(next(iter(patterns)))


def helix_fill(template, answers, cwd):
    """The launch arguments Helix sends for `template` answered with `answers` (one per
    completion), in Helix's working directory `cwd`."""
    params = []
    for i, completion in enumerate(template.get("completion", [])):
        advanced = completion if isinstance(completion, dict) else {}
        value = answers[i] if i < len(answers) else ""
        if not value:
            value = advanced.get("default", "")
        if advanced.get("completion") in ("filename", "directory"):
            path = Path(cwd, value)
            value = str(path.resolve()) if path.exists() else value
        params.append(value)
    args = {}
    for key, value in template["args"].items():
        for i, param in enumerate(params):
            pattern = "{%d}" % i
            if isinstance(value, str):
                value = value.replace(pattern, param)
            elif isinstance(value, list):
                value = [v.replace(pattern, param) for v in value]
        # Rust's `str::parse::<usize>`: digits, an optional leading '+'.
        if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value) and int(value) < 2**64:
            value = int(value)
        args[key] = value
    args["cwd"] = str(cwd)
    return args


def help_text(*args):
    out = subprocess.run([str(KBRIDGE), *args, "--help"], capture_output=True, text=True, check=True)
    return out.stdout


def subcommands():
    """Names listed under `Commands:` in `kbridge --help` (clap's layout)."""
    text = help_text().split("Commands:", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in text.splitlines() if line.strip()}


@test
def parses_as_helix_config():
    """languages.toml parses and has debugger entries for python, rust, c, cpp, go; templates use only flat bridge keys kbridge knows"""
    found = debuggers()
    assert EXPECTED_LANGUAGES <= set(found), f"missing: {EXPECTED_LANGUAGES - set(found)}"
    flat = flat_key_pattern()
    for file, lang, dbg in every_debugger():
        lang = f"{file}: {lang}"
        assert dbg["transport"] == "stdio", f"{lang}: transport {dbg['transport']}"
        assert dbg["command"] == "kbridge", f"{lang}: command {dbg['command']}"
        assert dbg["templates"], f"{lang}: no templates"
        for t in dbg["templates"]:
            assert t["request"] in ("launch", "attach"), f"{lang}/{t['name']}: request {t['request']}"
            for key, value in t["args"].items():
                # Helix's DebugArgumentValue: String | Array(Vec<String>) | Boolean.
                ok = isinstance(value, (str, bool)) or (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)
                )
                assert ok, f"{lang}/{t['name']}: arg {key} = {value!r} is not a type Helix accepts"
                for index in re.findall(r"\{(\d+)\}", json.dumps(value)):
                    assert int(index) < len(t.get("completion", [])), f"{lang}/{t['name']}: {{{index}}} has no completion"
                if key.startswith("bridge"):
                    assert flat.fullmatch(key), f"{lang}/{t['name']}: {key} is not a flat bridge key of the launch schema"


@test
def commands_exist_in_cli():
    """every subcommand and flag the entries use exists in `kbridge --help` / `kbridge dap --help`"""
    subs = subcommands()
    presets = [o["const"] for o in json.loads(SCHEMA.read_text())["$defs"]["Preset"]["oneOf"]]
    for file, lang, dbg in every_debugger():
        lang = f"{file}: {lang}"
        args = dbg["args"]
        assert args[0] in subs, f"{lang}: `kbridge {args[0]}` is not a kbridge subcommand ({sorted(subs)})"
        sub_help = help_text(args[0])
        for flag in [a for a in args if a.startswith("--")]:
            assert re.search(rf"(^|\s){re.escape(flag)}[\s=]", sub_help), f"{lang}: `kbridge {args[0]} {flag}` does not exist"
        value = args[args.index("--debugger") + 1]
        assert value in presets, f"{lang}: --debugger {value} is not a preset ({presets})"


class Dap:
    """Just enough of a DAP client to play Helix: Content-Length framing over stdio."""

    def __init__(self, proc):
        self.proc, self.seq, self.buf, self.events, self.output = proc, 0, b"", [], ""

    def send(self, command, arguments):
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return self.seq

    def read(self, deadline):
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                if len(rest) >= length:
                    self.buf = rest[length:]
                    msg = json.loads(rest[:length])
                    if msg["type"] == "event" and msg["event"] == "output":
                        self.output += msg["body"].get("output", "")
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError(f"no message from kbridge in time; output so far: {self.output!r}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(f"kbridge closed its output; output so far: {self.output!r}")
            self.buf += chunk

    def request(self, command, arguments, deadline):
        """Sends a request and returns its response's body; events meanwhile are kept."""
        seq = self.send(command, arguments)
        while True:
            msg = self.read(deadline)
            if msg["type"] == "response" and msg["request_seq"] == seq:
                assert msg["success"], f"{command} failed: {msg.get('message')} {msg.get('body')}; output: {self.output!r}"
                return msg.get("body") or {}
            if msg["type"] == "event":
                self.events.append(msg)

    def initialize(self, adapter_id, deadline):
        """`initialize` with the arguments helix-dap's client sends."""
        return self.request("initialize", {
            "clientID": "hx", "clientName": "helix", "adapterID": adapter_id, "locale": "en-us",
            "linesStartAt1": True, "columnsStartAt1": True, "pathFormat": "path",
            "supportsVariableType": True, "supportsVariablePaging": False,
            "supportsRunInTerminalRequest": True, "supportsMemoryReferences": False,
            "supportsProgressReporting": False, "supportsInvalidatedEvent": False,
        }, deadline)

    def event(self, name, deadline):
        """The next `name` event (kept or new); a failed response on the way is an error."""
        while True:
            kept = next((e for e in self.events if e["event"] == name), None)
            if kept:
                self.events.remove(kept)
                return kept
            msg = self.read(deadline)
            if msg["type"] == "response":
                assert msg["success"], f"{msg['command']} failed: {msg.get('message')} {msg.get('body')}; output: {self.output!r}"
            elif msg["type"] == "event":
                self.events.append(msg)


def start_kbridge(dbg, cwd, env=None, stderr=subprocess.DEVNULL):
    """The debugger command of `dbg` as Helix runs it: in its working directory, on stdio."""
    return subprocess.Popen(
        [str(KBRIDGE), *dbg["args"]], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
    )


@test
def python_template_runs_through_kbridge():
    """the Python template, filled in as Helix does, runs a program through kbridge and debugpy"""
    dbg = debuggers()["python"]
    template = next(t for t in dbg["templates"] if t["name"] == "kbridge: launch file")
    work = Path(tempfile.mkdtemp(prefix="kbridge-helix-"))
    try:
        shutil.copy(REPO / "tests" / "programs" / "env_probe.py", work / "app.py")
        # The prompt left empty: Helix takes the completion's default, app.py.
        args = helix_fill(template, [""], work)
        assert args["program"] == str(work / "app.py"), args
        with tempfile.TemporaryFile() as stderr:
            proc = start_kbridge(dbg, work, stderr=stderr)
            try:
                dap, deadline = Dap(proc), time.monotonic() + 60
                dap.initialize(dbg["name"], deadline)
                dap.send("launch", args)
                dap.event("initialized", deadline)
                dap.send("configurationDone", {})
                dap.event("terminated", deadline)
                assert "probe <unset> native <unset>" in dap.output, f"program output: {dap.output!r}"
                dap.send("disconnect", {})
                proc.stdin.close()
                code = proc.wait(timeout=30)
                stderr.seek(0)
                assert code == 0, stderr.read().decode()
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- bridged to the fixture cluster ------------------------------------------------------

FIXTURE = KBRIDGE.parent / "kube-fixture"
AGENT = KBRIDGE.parent / "kbridge-agent"
STEP_TIMEOUT = 120

# The developer's service: reads what the pod would give it.
PROBE = """import os

api_key = os.environ.get("API_KEY", "<unset>")
log_level = os.environ.get("LOG_LEVEL", "<unset>")
stats_host = os.environ.get("STATS_API_SERVICE_HOST", "<unset>")
print("probe", api_key, log_level, stats_host)  # BREAK
"""


def why_skip_cluster():
    if os.geteuid() != 0:
        return "the fixture cluster needs root"
    for binary in (KBRIDGE, FIXTURE, AGENT):
        if not binary.exists():
            return f"{binary} is not built (cargo build --workspace --bins)"
    if not shutil.which("kubectl"):
        return "kubectl is not installed"
    return None


class Cluster:
    """`kube-fixture serve --demo`, started once for the bridged tests, stopped at exit."""

    proc, kubeconfig, tmp = None, None, None

    @classmethod
    def get(cls):
        reason = why_skip_cluster()
        if reason:
            raise Skip(reason)
        if cls.proc is None:
            cls.tmp = Path(tempfile.mkdtemp(prefix="kbridge-helix-cluster-")).resolve()
            state = cls.tmp / "cluster"
            cls.proc = subprocess.Popen(
                [str(FIXTURE), "serve", "--demo", "--state-dir", str(state), "--agent-bin", str(AGENT)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            deadline = time.monotonic() + STEP_TIMEOUT
            for line in cls.proc.stdout:
                if line.startswith("ready "):
                    break
                assert time.monotonic() < deadline, "kube-fixture was not ready in time"
            else:
                raise AssertionError(f"kube-fixture exited with {cls.proc.wait()} before it was ready")
            cls.kubeconfig = state / "kubeconfig"
        return cls

    @classmethod
    def stop(cls):
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.terminate()  # it stops its pods and removes namespaces and links
            try:
                cls.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
        if cls.tmp is not None:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def pod_template(cls):
        out = subprocess.run(
            ["kubectl", "--kubeconfig", str(cls.kubeconfig), "-n", "todo", "get", "deployment", "todo-api", "-o", "json"],
            capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout)["spec"]["template"]


atexit.register(Cluster.stop)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variable(dap, frame_id, name, deadline):
    for scope in dap.request("scopes", {"frameId": frame_id}, deadline)["scopes"]:
        if scope.get("expensive"):
            continue
        body = dap.request("variables", {"variablesReference": scope["variablesReference"]}, deadline)
        found = next((v for v in body["variables"] if v["name"] == name), None)
        if found:
            return found["value"]
    raise AssertionError(f"variable {name} not in any scope of frame {frame_id}")


def debug_bridged(dbg, template, answers):
    """Plays Helix on the fixture cluster: `:debug-start` with `template` answered with
    `answers`, a breakpoint on the probe's print; checks the pod's environment there, then
    continues to the end and checks the Deployment is as it was."""
    cluster = Cluster.get()
    before = cluster.pod_template()
    work = Path(tempfile.mkdtemp(prefix="kbridge-helix-ws-", dir=cluster.tmp))
    (work / "app.py").write_text(PROBE)
    line = PROBE.splitlines().index(next(l for l in PROBE.splitlines() if "BREAK" in l)) + 1
    args = helix_fill(template, answers, work)
    # KUBECONFIG as the user's shell has it; TMPDIR keeps this session's state apart.
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "TMPDIR": str(work)}
    with tempfile.TemporaryFile() as stderr:
        proc = start_kbridge(dbg, work, env=env, stderr=stderr)
        try:
            dap, deadline = Dap(proc), time.monotonic() + 4 * STEP_TIMEOUT
            dap.initialize(dbg["name"], deadline)
            dap.send("launch", args)
            # Helix answers `initialized` with its breakpoints, then configurationDone.
            dap.event("initialized", deadline)
            dap.request("setBreakpoints", {"source": {"path": str(work / "app.py")}, "breakpoints": [{"line": line}]}, deadline)
            dap.request("configurationDone", {}, deadline)
            stopped = dap.event("stopped", deadline)
            thread = stopped["body"].get("threadId") or dap.request("threads", {}, deadline)["threads"][0]["id"]
            frame = dap.request("stackTrace", {"threadId": thread}, deadline)["stackFrames"][0]["id"]
            assert variable(dap, frame, "api_key", deadline) == "'s3cr3t-from-cluster'", "the pod's Secret env var"
            assert variable(dap, frame, "log_level", deadline) == "'info'", "the pod's plain env var"
            assert re.fullmatch(r"'127\.\d+\.\d+\.\d+'", variable(dap, frame, "stats_host", deadline)), "stats-api local"
            assert "bridged deployment/todo-api" in dap.output, dap.output
            dap.request("continue", {"threadId": thread}, deadline)
            dap.event("terminated", deadline)
            dap.request("disconnect", {"restart": False, "terminateDebuggee": True}, deadline)
            proc.stdin.close()
            code = proc.wait(timeout=STEP_TIMEOUT)
            stderr.seek(0)
            assert code == 0, f"kbridge exited with {code}: {stderr.read().decode()}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert cluster.pod_template() == before, "the Deployment's pod template is not as it was"


@test
def python_template_bridged_with_flat_keys():
    """the bridged Python template, answered todo-api/todo/a port as in Helix, stops with the pod's Secret and restores todo-api"""
    dbg = debuggers()["python"]
    template = next(t for t in dbg["templates"] if t["name"] == "kbridge: launch file bridged to a service")
    args = helix_fill(template, ["", "todo-api", "todo", str(free_port())], Path("/"))
    assert isinstance(args["bridge.ports"], int), f"Helix sends an all-digit answer as a number: {args}"
    debug_bridged(dbg, template, ["", "todo-api", "todo", str(free_port())])


@test
def project_flags_bridge_every_template():
    """the example project's `kbridge dap --service todo-api --namespace todo` bridges a template without bridge keys"""
    dbg = debuggers(PROJECT_LANGUAGES)["python"]
    assert "--service" in dbg["args"] and "--namespace" in dbg["args"], dbg["args"]
    template = next(t for t in dbg["templates"] if t["name"] == "kbridge: launch file bridged to todo-api")
    assert not any(k.startswith("bridge") for k in template["args"]), template["args"]
    debug_bridged(dbg, template, [""])


def lsp_exchange(command, messages, timeout=10):
    """Runs the language server `command` and sends `messages` (LSP, Content-Length framed);
    returns the messages it answered with, in order."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig"})
    payload = b""
    for message in messages:
        body = json.dumps(message).encode()
        payload += b"Content-Length: %d\r\n\r\n" % len(body) + body
    out, _ = proc.communicate(payload, timeout=timeout)
    answers = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        answers.append(json.loads(rest[:length]))
        out = rest[length:]
    return answers, proc.returncode


@test
def language_server_entry():
    """the `kbridge` language server is `kbridge lsp`, attached to yaml, json and azds-local.env, and answers as Helix starts it"""
    config = load()
    server = config["language-server"]["kbridge"]
    assert server["command"] == "kbridge" and server["args"] == ["lsp"], server
    assert server["args"][0] in subcommands(), f"`kbridge {server['args'][0]}` is not a subcommand"
    languages = {lang["name"]: lang for lang in config["language"]}
    # Helix replaces a language's server list: the default servers must stay in it.
    assert languages["yaml"]["language-servers"] == ["yaml-language-server", "kbridge"], languages["yaml"]
    assert languages["json"]["language-servers"] == ["vscode-json-language-server", "kbridge"], languages["json"]
    env = languages["azds-env"]
    # A language Helix does not have needs these keys (helix-core's LanguageConfiguration).
    for key in ("scope", "file-types", "roots"):
        assert key in env, f"azds-env: no `{key}`"
    assert {"glob": "azds-local.env"} in env["file-types"], env["file-types"]
    assert env["language-servers"] == ["kbridge"], env
    # Start it as Helix would (the command and args of the entry, kbridge from KBRIDGE_BIN)
    # and play a session: initialize, open azds-local.env with a misspelt token, shutdown.
    uri = "file:///work/azds-local.env"
    answers, code = lsp_exchange([str(KBRIDGE), *server["args"]], [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "azds-env", "version": 1, "text": "DB=${service.db}\n"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ])
    assert code == 0, f"kbridge lsp exited with {code}"
    assert answers[0]["result"]["serverInfo"]["name"] == "kbridge", answers[0]
    published = next(a for a in answers if a.get("method") == "textDocument/publishDiagnostics")
    assert published["params"]["uri"] == uri, published
    message = published["params"]["diagnostics"][0]["message"]
    assert "did you mean `services`?" in message, message


if __name__ == "__main__":
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)
