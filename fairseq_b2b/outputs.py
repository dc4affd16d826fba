"""One rule for every file or folder a command writes.

* :func:`check_output` runs before any work starts: the path must not be one of the command's
  inputs (never, not even with ``--force``), must be of the right kind (a file where a file is
  written, a folder where a folder is), must not exist unless ``--force`` is given (an empty
  folder counts as new), and its folder must be writable.  Every refusal is one line.
* :func:`atomic_output` writes under a temporary name beside the output and renames it into
  place; a failure removes the temporary and any folder it created.  A temporary carries the
  process id (``.b2b-<command>-<pid>-<random><suffix>``): the next run of the command in that
  folder removes those whose process is gone (killed with SIGKILL, power loss).
* :func:`exit_on_signals` turns SIGTERM / SIGHUP into ``SystemExit`` so the cleanup above runs;
  :func:`die_with_parent` makes a child process die with its parent, even one killed with SIGKILL.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import time

from .errors import B2BError

LEGACY_MIN_AGE_S = 300  # pre-pid temporaries (``.tmp-<16 hex>.pt``) untouched this long are left-overs


class OutputError(B2BError):
    """An output path that cannot or must not be written."""


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _existing_ancestor(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    return folder


def _writable(folder: str) -> bool:
    """Whether a file can be created in ``folder`` (tried, not guessed: ``os.access`` says yes
    to root for ``/proc``)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    probe = os.path.join(folder, f".b2b-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)
    return True


def check_output(path, kind: str = "file", force: bool = False, what: str = "--output", inputs: dict | None = None,
                 replaceable=None, example: str = "out.pt") -> str:
    """Refuse (one line, :class:`OutputError`) an output path that must not be written; returns it
    absolute.  ``kind``: ``"file"`` or ``"dir"``.  ``inputs``: ``{option: path}`` of what the
    command reads; the output may never be one of them.  ``replaceable(path) -> bool`` names
    outputs this command wrote before and may regenerate without ``--force``."""
    path = os.fspath(path)
    if not path:
        raise OutputError(f"{what} is empty: name the {'file' if kind == 'file' else 'folder'} to write")
    for option, source in (inputs or {}).items():
        if not source or not os.path.exists(os.fspath(source)) or not os.path.lexists(path):
            continue
        source = os.fspath(source)
        if _same(path, source):
            raise OutputError(f"{what} '{path}' is the {option} of this command: it would be overwritten; "
                              "choose another output path")
        if kind == "dir" and os.path.isdir(path) and _inside(source, path):
            raise OutputError(f"{what} '{path}' holds the {option} '{source}' of this command: replacing it would "
                              "delete that; choose another output path")
    if os.path.lexists(path):
        is_dir = os.path.isdir(path)
        if kind == "file" and is_dir:
            raise OutputError(f"{what} '{path}' is a folder: name the file to write in it, "
                              f"e.g. {os.path.join(path, example)}")
        if kind == "dir" and not is_dir:
            raise OutputError(f"{what} '{path}' is a file, not a folder: choose another path"
                              + (" (--force replaces a folder by a folder only)" if force else ""))
        empty_dir = kind == "dir" and not os.listdir(path)
        if not (empty_dir or force or (replaceable is not None and replaceable(path))):
            raise OutputError(f"{what} '{path}' exists{' and is not empty' if is_dir else ''}: choose another path "
                              "or pass --force to replace it")
        folder = os.path.dirname(os.path.abspath(path))
    else:
        folder = _existing_ancestor(path)
        if not os.path.isdir(folder):
            raise OutputError(f"{what} '{path}': '{folder}' is a file, not a folder: choose another path")
    if not _writable(folder):
        raise OutputError(f"{what} '{path}': cannot write in '{folder}': choose another path")
    return os.path.abspath(path)


# ----------------------------------------------------------------------------- temporaries

def temp_prefix(command: str, hidden: bool = True) -> str:
    return f"{'.' if hidden else ''}{command}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def clean_stale(folder, command: str = "b2b", legacy: str | None = None, hidden: bool = True) -> list:
    """Remove the temporaries in ``folder`` whose process is gone: every b2b command's (hidden
    ``.b2b[-command]-<pid>-<hex>``), or, with ``hidden=False``, ``command``'s own visible ones
    (``b2b-eval-lm-<pid>-<hex>`` in the system's temporary folder).  ``legacy``: a regular
    expression of an older temporary without a process id, removed when untouched for
    ``LEGACY_MIN_AGE_S``.  Returns the removed paths."""
    folder = os.fspath(folder)
    if hidden:
        pattern = re.compile(r"\.b2b-(?:[a-z][a-z-]*?-)?(\d+)-[0-9a-f]{16}")
    else:
        pattern = re.compile(re.escape(temp_prefix(command, hidden=False)) + r"(\d+)-[0-9a-f]{16}")
    old = re.compile(legacy) if legacy else None
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(folder, name)
        m = pattern.match(name)
        if m:
            if not _pid_alive(int(m.group(1))):
                _remove(path)
                removed.append(path)
        elif old is not None and old.fullmatch(name):
            with contextlib.suppress(OSError):
                if now - os.lstat(path).st_mtime >= LEGACY_MIN_AGE_S:
                    _remove(path)
                    removed.append(path)
    return removed


def temp_path(folder, command: str, suffix: str = "", hidden: bool = True) -> str:
    """A new, unused temporary name in ``folder`` that :func:`clean_stale` recognizes."""
    name = f"{temp_prefix(command, hidden)}{os.getpid()}-{secrets.token_hex(8)}{suffix}"
    return os.path.join(os.fspath(folder), name)


def _make_parents(folder: str) -> list:
    """``os.makedirs`` that returns the folders it created, outermost first."""
    created = []
    probe = folder
    while not os.path.isdir(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(folder, exist_ok=True)
    return created[::-1]


def missing_parents(folder: str) -> list:
    """``folder`` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while folder and not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing[::-1]


def remove_created(folders: list) -> None:
    """Remove the folders a refused or failed run created (innermost first), if still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def atomic_output(path, command: str, kind: str = "file", suffix: str = "", legacy: str | None = None):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (a file by a file,
    a folder by a folder); on failure it is removed, and so are the folders made for it.
    Temporaries of earlier killed runs of ``command`` in that folder are removed first."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    created = _make_parents(folder)
    clean_stale(folder, legacy=legacy)
    tmp = temp_path(folder, command, suffix)
    if kind == "file":
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's mode, as open() gives
        os.close(fd)
    ok = False
    try:
        yield tmp
        if kind == "dir" and os.path.isdir(path) and not os.path.islink(path):
            old = temp_path(folder, command)
            os.replace(path, old)  # a folder cannot be renamed over a non-empty folder
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
        ok = True
    finally:
        if not ok:
            _remove(tmp)
            remove_created(created)


# ----------------------------------------------------------------------------- processes

def exit_on_signals(prog: str) -> None:
    """SIGTERM and SIGHUP end the command through ``SystemExit`` (``finally`` blocks run, the
    temporaries go, child processes are stopped) with the shell's exit code 128 + signal."""
    def handler(signum, frame):
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends it at once
        raise SystemExit(f"{prog}: interrupted by {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(sig, handler)


def die_with_parent() -> None:
    """``preexec_fn`` for a child process: the kernel sends it SIGKILL when its parent dies, even
    when the parent is killed with SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the SIGTERM handler still stops children
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def run_child(cmd, **kwargs):
    """``subprocess.run`` whose child dies with this process (SIGKILL included), and is killed
    when this process is interrupted (SIGTERM -> SystemExit, Ctrl-C)."""
    import subprocess

    with subprocess.Popen(cmd, preexec_fn=die_with_parent, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
