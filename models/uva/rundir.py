"""A training run directory's state: which stages it holds, who is training in it.

- `check_run(root, stages, resume, overwrite, inputs)`: before anything is written. A stage
  directory that already holds work is refused unless `--resume` (continue it) or `--overwrite`
  (replace it; only that stage's directory is removed, and never one holding an input such as
  `--init`); `--resume` where none of the stages holds work is an error, not a fresh start.
- `RunLock(root)`: one training per run directory. `<root>/train.lock` is flocked for the
  training's life and holds the owner's pid and host; a second training is refused naming that
  owner, and a lock a dead process left is taken over with a message.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable

from .fsutil import OutPathError

LOCK_NAME = "train.lock"


class RunBusyError(OutPathError):
    """Another live training process holds the run directory."""


def stage_has_work(stage_dir: Path) -> bool:
    """A stage directory holds something a run wrote (a final model, resumable state, a log)."""
    return stage_dir.is_dir() and any(stage_dir.iterdir())


def stage_resumable(stage_dir: Path) -> bool:
    return (stage_dir / "state" / "latest.json").is_file() or \
        (stage_dir / "final" / "config.json").is_file()


def check_run(root: str | Path, stages: Iterable[str], resume: bool, overwrite: bool,
              inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse what would replace a finished stage or silently start over (OutPathError)."""
    root = Path(root)
    stages = list(stages)
    if root.exists() and not root.is_dir():
        raise OutPathError(f"--out {root} is a file, not a run directory; choose another --out")
    if resume:
        if not any(stage_resumable(root / s) for s in stages):
            raise OutPathError(f"--resume: no run to resume in {root} (no state or final "
                               f"checkpoint of stage {', '.join(stages)}); drop --resume to "
                               f"start one")
        return
    busy = [s for s in stages if stage_has_work(root / s)]
    if busy and not overwrite:
        raise OutPathError(f"--out {root} already holds stage {', '.join(busy)}: pass --resume "
                           f"to continue it, --overwrite to replace it, or choose another --out")
    for s in busy:
        stage_dir = (root / s).resolve()
        for given in inputs:
            if given is None:
                continue
            src = Path(given).resolve()
            if src == stage_dir or stage_dir in src.parents:
                raise OutPathError(f"--overwrite would delete {root / s}, which holds the input "
                                   f"{given}; choose another --out")


def clear_stages(root: str | Path, stages: Iterable[str]) -> None:
    """--overwrite: remove the named stage directories of `root` (nothing else)."""
    for s in stages:
        stage_dir = Path(root) / s
        if stage_has_work(stage_dir):
            print(f"--overwrite: removing the previous {stage_dir}", flush=True)
            shutil.rmtree(stage_dir)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """Exclusive lock on a run directory for the life of a training (a context manager).

    The exclusion itself is an flock on `<root>/train.lock`, which the kernel drops when its
    process dies, so a killed training never blocks the next; the file's content (owner pid,
    host, start time) names the owner in the refusal, and a pid left by a process that died
    without releasing is reported as a stale lock taken over.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.fd: int | None = None
        self.created_root = False

    def _owner(self) -> dict:
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def acquire(self) -> None:
        self.created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self._owner()
            who = (f"process {owner.get('pid')} on {owner.get('host')}" if owner
                   else "another process")
            raise RunBusyError(f"--out {self.root} is in use by a training ({who}, lock "
                               f"{self.path}); wait for it to finish or choose another --out")
        previous = self._owner()
        pid = previous.get("pid")
        if isinstance(pid, int) and pid != os.getpid():
            state = "not running" if not _pid_alive(pid) else "no longer holding it"
            print(f"{self.path}: taking over the stale lock of process {pid} ({state})",
                  flush=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # a clean exit leaves no owner behind
            if self.created_root and os.listdir(self.root) == [LOCK_NAME]:
                self.path.unlink()  # a training that wrote nothing leaves nothing
                self.root.rmdir()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
