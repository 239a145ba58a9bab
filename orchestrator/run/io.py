"""Every write a reader may see half done goes through `atomic_write`: a temp file in the same directory,
then one rename, so a crash leaves the old file or the new one, never a torn one. And file hashing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import UserError


class DiskFullError(UserError):
    """A write found no space left: the file it would have replaced is intact, the command can be rerun."""


def disk_full(err: BaseException, folder: Path) -> bool:
    """Whether `err`, raised by a write into `folder`, means the disk is full: ENOSPC itself, or a library's
    own write error (torch.save raises RuntimeError "file write failed") with nothing left on the disk."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return isinstance(err, (OSError, RuntimeError)) and disk_is_full(folder)


FULL_BYTES = 1 << 16  # less free than this: the disk is full for any write kdsweep or Ray makes


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free on the filesystem holding `folder` (or its nearest existing parent); None if unknown."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_is_full(folder: str | Path) -> bool:
    """Whether the filesystem holding `folder` has no room left for any write kdsweep or Ray makes."""
    free = free_bytes(folder)
    return free is not None and free < FULL_BYTES


def full_disk_error(path: Path, written: int = 0, needed: int = 0) -> DiskFullError:
    free = shutil.disk_usage(path.parent).free
    need = f"it needed {needed:,} bytes" if needed else f"it had written {written:,} bytes when the disk filled"
    return DiskFullError(
        f"{path}: the disk is full ({free:,} bytes free in {path.parent}; {need}); free some space and run the "
        "same command again"
    )


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` writes the content to a temp path beside `path`; then it replaces `path` at once. A full
    disk is one line (DiskFullError) naming the path and the space, the old file left whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")  # keeps the suffix (np.save adds .npy)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if not disk_full(e, path.parent):
            raise
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        raise full_disk_error(path, written=written) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_dir(
    dest: str | Path, fill: Callable[[Path], None], keep_others: bool = True, generated: frozenset[str] = frozenset()
) -> Path:
    """Rebuild directory `dest` at once: `fill(tmp)` writes the new content into a temp directory beside it,
    the files of `dest` that `fill` did not write (a README beside a release) are carried over unless they
    are `generated` (a plot this export leaves out must not survive from the last one), and one rename puts
    it in place; a crash leaves the old directory or the new one, never half of either. A full disk is one
    line (DiskFullError) naming the directory and the space, the old directory left whole."""
    dest = Path(dest)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            fill(tmp)
            for f in dest.iterdir() if keep_others and dest.is_dir() else ():
                if not (tmp / f.name).exists() and f.name not in generated:
                    (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        except (OSError, RuntimeError) as e:
            if not disk_full(e, dest.parent):
                raise
            written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
            raise full_disk_error(dest, written=written) from None
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj, **kwargs) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, **kwargs) + "\n")


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save, atomically: a crash never leaves half a checkpoint."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class TornFileError(UserError):
    """A record that is not whole JSON: a write cut short (by a crash, a full disk, a copy) before kdsweep
    wrote its records atomically, or by hand."""


def parse_json(text: str, where: str | Path):
    """`text` as JSON, or TornFileError naming `where` and what to do (DiskFullError where the file sits on a
    full disk: the write was cut short by it, and freeing space comes first)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if "://" not in str(where) and disk_is_full(Path(where).parent):
            raise full_disk_error(Path(where), written=len(text)) from None
        raise TornFileError(
            f"{where}: not whole JSON ({e.msg} at character {e.pos} of {len(text)}), a write cut short; delete "
            "it and run the same command again (what it recorded is rebuilt or redone)"
        ) from None


def read_json(path: str | Path) -> dict:
    """The JSON object in `path`, or {} where there is none (TornFileError where it is not whole)."""
    path = Path(path)
    return parse_json(path.read_text(), path) if path.is_file() else {}


def project_relative(path: str | Path) -> str:
    """`path` as committed files name it: relative to the working directory (the project) when inside it,
    never an absolute path of the machine it ran on."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
