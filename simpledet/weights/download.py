"""A file downloaded whole or not at all (urllib, no other client).

The body streams into a temporary file beside the target (`.NAME.RANDOM.tmp`, files.TEMP_SUFFIX).
A transfer cut short is resumed with an HTTP Range request from the bytes already there; a server
that ignores the Range (200 instead of 206) sends the file again from its first byte, and the
temporary file starts over. Only a complete file is renamed to the target (os.replace): its size
equals Content-Length, and the caller's check of its content passed. On any failure the temporary
file is deleted, so the target name never holds part of a file.
"""

import http.client
import logging
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from simpledet.errors import UserError
from simpledet.files import TEMP_SUFFIX, make_dir

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60  # per connection attempt and per read: a stalled transfer counts as cut short
# consecutive attempts that bring no new byte before giving up; an attempt that gets further
# than any before it resets the count, so a long download survives many cuts
ATTEMPTS_WITHOUT_PROGRESS = 4
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Interrupted(Exception):
    """The connection broke before the whole body arrived."""


def download(url: str, dest: str | Path, check: Callable[[Path, str], None] | None = None, hint: str = "",
             progress: bool = True) -> Path:
    """Downloads `url` to `dest`. `check(path, url)` raises a UserError for content that is not
    what was asked for; `hint` ends every failure's message (what to do without the network)."""
    dest = Path(dest)
    make_dir(dest.parent)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        _fetch(url, tmp, hint, progress, dest.name)
        if check is not None:
            try:
                check(tmp, url)
            except UserError as e:
                raise UserError(f"{e}; the download was refused and nothing was kept{hint}") from None
        os.replace(tmp, dest)
    except OSError as e:
        raise UserError(f"{dest}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, tmp: Path, hint: str, progress: bool, label: str) -> None:
    received, best, failures, total = 0, 0, 0, None
    with open(tmp, "wb") as out, tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                                      dynamic_ncols=True, mininterval=0.5) as bar:
        while True:
            try:
                total = _transfer(url, out, out.tell(), bar, hint)
                received = out.tell()
                if total is None or received == total:
                    return
                if received > total:
                    raise UserError(f"cannot download {url}: the server sent {received:,} bytes, more than the "
                                    f"{total:,} it announced{hint}")
                raise _Interrupted(f"the body ended at byte {received:,} of {total:,}")
            except _Interrupted as e:
                received = out.tell()
                failures = 0 if received > best else failures + 1
                best = max(best, received)
                if failures >= ATTEMPTS_WITHOUT_PROGRESS:
                    of = f" of {total:,}" if total else ""
                    raise UserError(f"cannot download {url}: the connection broke {failures} times in a row without "
                                    f"progress, at byte {received:,}{of} ({e}){hint}") from None
                log.warning("download of %s interrupted at byte %s (%s); resuming", url, f"{received:,}", e)


def _transfer(url: str, out, start: int, bar: tqdm, hint: str) -> int | None:
    """One request: from byte `start` when there is one (Range), else the whole file. Appends the
    body to `out`; returns the file's full size when the server says it."""
    headers = {"User-Agent": "simpledet"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the range cannot be served: start over
            _restart(out, bar)
            raise _Interrupted("the server refused to resume (416)") from None
        raise UserError(f"cannot download {url}: the server answered {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        if start:  # it answered before: a passing failure
            raise _Interrupted(str(e.reason)) from None
        raise UserError(f"cannot download {url} ({e.reason}){hint}") from None
    except (OSError, http.client.HTTPException) as e:
        if start:
            raise _Interrupted(str(e) or type(e).__name__) from None
        raise UserError(f"cannot download {url} ({e or type(e).__name__}){hint}") from None
    with response:
        if start and response.status == 206:
            total = _total_size(response, start)
            if total is None:
                _restart(out, bar)
                raise _Interrupted("the server answered with another range than the one asked for")
        else:  # the whole file: the first request, or a server that ignores Range
            _restart(out, bar)
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        bar.total = total
        bar.refresh()
        try:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
            raise _Interrupted(str(e) or type(e).__name__) from None
    return total


def _total_size(response, start: int) -> int | None:
    """The file's size from a 206 answer's Content-Range, when the range starts at `start`."""
    m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if m is None or int(m.group(1)) != start or m.group(3) == "*":
        return None
    return int(m.group(3))


def _restart(out, bar: tqdm) -> None:
    out.seek(0)
    out.truncate()
    bar.reset()
