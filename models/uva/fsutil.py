"""Writing results without ever destroying what a user gave us.

Every command that writes an output goes through here:

- `atomic_write(path, fn)` / `atomic_write_json` / `atomic_write_bytes`: one file, written to a
  temporary sibling and renamed into place, so a crash never leaves a half-written file under
  the final name. The file gets the permissions a plain `open()` would give it (0666 minus the
  user's umask), not the private 0600 of mkstemp (and of safetensors' own writer): a checkpoint
  written by the training account stays readable by the robot's.
- `check_out(out, overwrite, inputs)`: the `--out` guard. An existing output is refused unless
  `overwrite`; an output that is, or contains, one of the command's inputs is refused even with
  `overwrite` (replacing it would delete the input).
- `atomic_output(out, overwrite, inputs)`: a context manager yielding a path that does not exist
  yet (inside a private staging directory beside `out`); the caller writes its file or directory
  there, and on success it replaces `out` in one rename. On failure the staging directory is
  removed and `out` is untouched. Nothing outside `out` and the staging directory is written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

STAGING_TAG = ".partial-"


class OutPathError(ValueError):
    """An output path would replace or delete something the user did not ask us to replace."""


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _public_mode(path: str | Path, directory: bool = False) -> None:
    """chmod `path` to what open()/mkdir() would have created under the current umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def atomic_write(path: str | Path, write_fn: Callable[[str], None]) -> None:
    """Call write_fn(tmp_path), then atomically rename tmp_path to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        _public_mode(tmp)  # after: some writers (safetensors) recreate the file, private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
    atomic_write(path, write)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_out(out: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = (),
              what: str = "--out") -> Path:
    """Refuse an output path that exists (unless `overwrite`) or that holds an input."""
    out = Path(out)
    resolved = out.resolve()
    for given in inputs:
        if given is None:
            continue
        src = Path(given).resolve()
        if _inside(src, resolved):
            raise OutPathError(f"{what} {out} holds the input {given}: writing there would "
                               f"delete it; choose another {what}")
    if exists(out) and not overwrite:
        raise OutPathError(f"{what} {out} already exists: pass --overwrite to replace it, "
                           f"or choose another {what}")
    if out.parent.exists() and not out.parent.is_dir():
        raise OutPathError(f"{what} {out}: {out.parent} is not a directory")
    return out


def exists(path: Path) -> bool:
    """True for anything at `path`, a dangling symbolic link included."""
    return path.exists() or path.is_symlink()


@contextmanager
def atomic_output(out: str | Path, overwrite: bool = False,
                  inputs: Iterable[str | Path | None] = (), what: str = "--out"):
    """Yield a fresh path to write `out`'s content at; rename it into place on success."""
    inputs = list(inputs)
    out = check_out(out, overwrite, inputs, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING_TAG}", dir=out.parent))
    try:
        _public_mode(staging, directory=True)
        new = staging / out.name
        yield new
        if not exists(new):
            raise RuntimeError(f"nothing was written for {out}")
        check_out(out, overwrite, inputs, what)  # it may have appeared while we worked
        if exists(out):  # a symbolic link is replaced itself, never what it points to
            old = staging / (out.name + ".old")
            os.replace(out, old)  # the previous output moves aside, then the new one moves in
            try:
                os.replace(new, out)
            except BaseException:
                os.replace(old, out)
                raise
        else:
            os.replace(new, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

