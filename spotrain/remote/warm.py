"""The warm start, on the instance: stdlib only, any Python >= 3.8, run there as `python -c SOURCE` (the
controller sends this file's text: it needs no bundle, so it runs before the first sync).

    serve RUN PYTHON ENV_HASH MODULES   the warm process (started detached by the agent, so it has the
                                        trainer's RUN/pid, train.log and exit_code): imports MODULES
                                        (comma-separated; one that fails is skipped), then waits for
                                        RUN/go.json and runs the trainer's argv in this same process
    go RUN                              stdin: JSON {argv, cwd, env}; hands the trainer's command to the
                                        warm process, or says why not (the caller then starts it cold);
                                        stdout: JSON {"warm": bool, "pid": ..., "why": ...}

RUN/warm (JSON: pid, python, env hash) exists while a warm process waits; it is removed when that
process takes the go, so the agent's status says `waiting` only before that. The go runs the trainer
with the synced bundle as cwd and first on sys.path, importing `trainer` only then: the code that runs
is the synced code. Only an argv of the same python with `-m MODULE` and the same environment (by its
hash: the values, which may be secrets, never go into a file) runs warm; anything else is refused.
"""

import json
import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 0.01
TAKE_S = 30.0  # how long `go` waits for the warm process to take the go before starting cold


def _paths(run_dir):
    return os.path.join(run_dir, "warm"), os.path.join(run_dir, "go.json")


def _write_atomic(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def serve(run_dir, python, env_hash, modules):
    warm_path, go_path = _paths(run_dir)
    taken = threading.Event()
    order = {}

    def watch_go():  # beside the imports, so the controller's go is taken at once
        while not os.path.exists(go_path):
            time.sleep(POLL_S)
        with open(go_path) as f:
            order.update(json.load(f))
        os.unlink(go_path)
        os.unlink(warm_path)
        taken.set()

    _write_atomic(warm_path, json.dumps({"pid": os.getpid(), "python": python, "env": env_hash}))
    threading.Thread(target=watch_go, daemon=True).start()
    started, done = time.monotonic(), []
    for name in filter(None, modules.split(",")):
        if taken.is_set():
            break  # the trainer imports what else it needs: nothing is gained by importing it first
        try:
            __import__(name)
            done.append(name)
        except Exception as err:  # the trainer's own import says what is wrong, if it needs it
            print(f"spotrain warm: import {name} failed: {err}", file=sys.stderr)
    imported = f"imported {', '.join(done) or 'nothing'} in {time.monotonic() - started:.1f} s"
    taken.wait()
    print(f"spotrain warm: {imported}; starting {' '.join(order['argv'][1:3])}", file=sys.stderr, flush=True)
    os.chdir(order["cwd"])
    sys.path[0] = os.getcwd()  # as `python -m` puts the current directory first
    module = order["argv"][2]
    sys.argv = [module, *order["argv"][3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _alive(run_dir, pid):
    if os.path.exists(os.path.join(run_dir, "exit_code")):
        return False
    try:
        with open(os.path.join(run_dir, "pid")) as f:
            if int(f.read()) != pid:
                return False
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def _refuse(run_dir, warm_path, pid, why):
    """The warm process cannot run this command: it goes (SIGKILL, its exit code waited for, so that
    the agent's next launch finds the run directory free) and the trainer starts cold."""
    if pid is not None and _alive(run_dir, pid):
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while not os.path.exists(os.path.join(run_dir, "exit_code")) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    if os.path.exists(warm_path):
        os.unlink(warm_path)
    return {"warm": False, "pid": None, "why": why}


def go(run_dir, order):
    # `~/` as the agent expands it (remote/agent.py's main): only the instance knows its home
    home = [os.path.expanduser(a) if a.startswith("~/") else a for a in order["argv"]]
    run_dir, order = os.path.expanduser(run_dir), dict(order, argv=home, cwd=os.path.expanduser(order["cwd"]))
    warm_path, go_path = _paths(run_dir)
    try:
        with open(warm_path) as f:
            warm = json.load(f)
    except (OSError, ValueError):
        return {"warm": False, "pid": None, "why": "no warm process"}
    pid, argv = warm.get("pid"), order["argv"]
    if not _alive(run_dir, pid):
        return _refuse(run_dir, warm_path, None, "the warm process is gone")
    if argv[0] != warm.get("python") or len(argv) < 3 or argv[1] != "-m":
        return _refuse(run_dir, warm_path, pid, f"the command is not `{warm.get('python')} -m MODULE`")
    if order["env"] != warm.get("env"):
        return _refuse(run_dir, warm_path, pid, "the environment differs from the warm process's")
    _write_atomic(go_path, json.dumps({"argv": argv, "cwd": order["cwd"]}))
    deadline = time.monotonic() + TAKE_S
    while os.path.exists(warm_path):
        if not _alive(run_dir, pid) or time.monotonic() > deadline:
            if os.path.exists(go_path):
                os.unlink(go_path)
            return _refuse(run_dir, warm_path, pid, "the warm process did not take the go")
        time.sleep(POLL_S)
    return {"warm": True, "pid": pid, "why": ""}


if __name__ == "__main__":
    verb = sys.argv[1]
    if verb == "serve":
        serve(*sys.argv[2:6])
    elif verb == "go":
        json.dump(go(sys.argv[2], json.load(sys.stdin)), sys.stdout)
    else:
        sys.exit(f"spotrain warm: unknown verb {verb!r}")
