#!/usr/bin/env python3
"""Checks editor-clients/helix/languages.toml against the kbridge CLI.

1. It parses as TOML, in the shape Helix reads (template arg values may only be strings,
   string lists or booleans; `{N}` must name a completion), for python, rust, c, cpp, go.
2. Every subcommand and flag a debugger entry passes exists in `kbridge --help` /
   `kbridge <sub> --help`, and every `--debugger` value is a preset of the launch schema.
3. The Python template, filled in as Helix fills it (and sent as Helix sends it: only the
   template's args, no `type` or `name`), runs env_probe.py through `kbridge dap` and
   debugpy to the end, with kbridge's GRPC_DNS_RESOLVER=native in its environment.

Needs Python >= 3.11 (tomllib) and a built kbridge (KBRIDGE_BIN, else target/debug/kbridge).
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LANGUAGES = HERE / "languages.toml"
SCHEMA = REPO / "config-schema" / "schema" / "launch.json"
KBRIDGE = Path(os.environ.get("KBRIDGE_BIN", REPO / "target" / "debug" / "kbridge")).resolve()
EXPECTED_LANGUAGES = {"python", "rust", "c", "cpp", "go"}

results = []


def test(fn):
    try:
        fn()
        results.append(True)
        print(f"ok - {fn.__doc__}")
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        results.append(False)
        print(f"not ok - {fn.__doc__}\n    {type(e).__name__}: {e}")
    return fn


def load():
    with open(LANGUAGES, "rb") as f:
        return tomllib.load(f)


def debuggers():
    return {lang["name"]: lang["debugger"] for lang in load()["language"] if "debugger" in lang}


def help_text(*args):
    out = subprocess.run([str(KBRIDGE), *args, "--help"], capture_output=True, text=True, check=True)
    return out.stdout


def subcommands():
    """Names listed under `Commands:` in `kbridge --help` (clap's layout)."""
    text = help_text().split("Commands:", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in text.splitlines() if line.strip()}


@test
def parses_as_helix_config():
    """languages.toml parses and has debugger entries for python, rust, c, cpp, go"""
    found = debuggers()
    assert EXPECTED_LANGUAGES <= set(found), f"missing: {EXPECTED_LANGUAGES - set(found)}"
    for lang, dbg in found.items():
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


@test
def commands_exist_in_cli():
    """every subcommand and flag the entries use exists in `kbridge --help` / `kbridge dap --help`"""
    subs = subcommands()
    presets = [o["const"] for o in json.loads(SCHEMA.read_text())["$defs"]["Preset"]["oneOf"]]
    for lang, dbg in debuggers().items():
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
        self.proc, self.seq, self.buf = proc, 0, b""

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
                    return json.loads(rest[:length])
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError("no message from kbridge in time")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError("kbridge closed its output")
            self.buf += chunk


@test
def python_template_runs_through_kbridge():
    """the Python template, filled in as Helix does, runs a program through kbridge and debugpy"""
    dbg = debuggers()["python"]
    template = next(t for t in dbg["templates"] if t["name"] == "kbridge: launch file")
    work = Path(tempfile.mkdtemp(prefix="kbridge-helix-"))
    try:
        shutil.copy(REPO / "tests" / "programs" / "env_probe.py", work / "app.py")
        # Helix substitutes the completion's answer (here its default) for {0}.
        default = template["completion"][0]["default"]
        args = {k: v.replace("{0}", default) if isinstance(v, str) else v for k, v in template["args"].items()}
        # Helix starts the adapter in its working directory, the project root.
        proc = subprocess.Popen(
            [str(KBRIDGE), *dbg["args"]], cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            dap, deadline, output = Dap(proc), time.monotonic() + 60, ""
            dap.send("initialize", {"clientID": "hx", "adapterID": dbg["name"], "linesStartAt1": True, "columnsStartAt1": True, "pathFormat": "path"})
            launch = dap.send("launch", args)
            while True:
                msg = dap.read(deadline)
                if msg["type"] == "event" and msg["event"] == "initialized":
                    dap.send("configurationDone", {})
                elif msg["type"] == "event" and msg["event"] == "output":
                    output += msg["body"].get("output", "")
                elif msg["type"] == "response" and msg["request_seq"] == launch:
                    assert msg["success"], f"launch failed: {msg.get('message')} {msg.get('body')}"
                elif msg["type"] == "event" and msg["event"] == "terminated":
                    break
            assert "probe <unset> native <unset>" in output, f"program output: {output!r}"
            dap.send("disconnect", {})
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)
