"""Files written whole or not at all: a temporary file beside the target, fsync, then a rename,
so that a reader (or a run killed mid-write) sees the old file or the new one, never a part.

A write the system refuses (disk full, no permission, a path through a regular file) is a
UserError naming the file and the system's reason, and leaves no temporary file behind."""

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from simpledet.errors import UserError

TEMP_SUFFIX = ".tmp"  # temporary files are named .NAME.RANDOM.tmp, beside NAME


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """write(file) fills a temporary file opened for binary writing; it replaces `path` only
    once it is complete on disk, and the rename is made durable with the directory."""
    path = Path(path)
    tmp = None
    try:
        make_dir(path.parent)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        with open(tmp, "xb") as f:  # the usual permissions (mkstemp's are owner-only)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def make_dir(path: str | Path) -> None:
    """mkdir -p, with a refusal reported as a UserError naming the folder."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(Path(path), e) from None


def write_error(path: Path, e: OSError) -> UserError:
    return UserError(f"{path}: cannot write ({e.strerror or e})")


def remove_temp_files(folder: Path) -> list[Path]:
    """Deletes the temporary files a killed writer left in `folder`; returns them."""
    left = sorted(folder.glob(f".*{TEMP_SUFFIX}"))
    for path in left:
        path.unlink(missing_ok=True)
    return left


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in `folder` survive a power cut (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
