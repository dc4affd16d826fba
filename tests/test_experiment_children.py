"""b2b-experiment's child processes die with it, even when it is killed with SIGKILL (issue 21's
rule, for the runner's b2b-train runs and its downstream fine-tunes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PARENT = textwrap.dedent("""
    import sys
    from fairseq_b2b.experiment import {module} as m
    m._bin = lambda name: {child!r}
    {call}
""")
CHILD = "#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n"
CALLS = {
    "training_run": "from fairseq_b2b.experiment.plan import Run\n"
                    "m.run_training({root!r}, {root!r}, Run('r', 'bert', 'scratch', []))",
    "downstream": "m._call({root!r}, ['b2b-glue', 'sweep'], 'log.txt', None)",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(") ")[1][0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("module", sorted(CALLS))
def test_a_killed_runner_takes_its_child_with_it(module, tmp_path):
    pidfile, child = tmp_path / "child.pid", tmp_path / "fake-command"
    child.write_text(CHILD.format(pidfile=pidfile))
    child.chmod(0o755)
    call = CALLS[module].format(root=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(module=module, child=str(child), call=call)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            assert parent.poll() is None, "the runner ended before starting its child"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        assert not _alive(pid), f"{module}: the child outlived the runner killed with SIGKILL"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pidfile.exists() and pidfile.read_text().strip() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
