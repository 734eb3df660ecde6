"""Small file helpers: atomic writes (an interrupted run leaves no partial file) and locked appends."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


TMP_SUFFIX = '.tmp'


def proc_status_field(name: str):
    """The first word after `<name>:` in Linux's /proc/self/status (e.g. 'VmHWM' -> '123456', in kB), or None
    where there is no such file or field; the file is closed before returning."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(f'{name}:'):
                    return line.split()[1]
    except OSError:
        pass
    return None


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else by setting and restoring."""
    field = proc_status_field('Umask')
    if field is not None:
        return int(field, 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ''):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block finishes.

    The file gets the permissions an ordinary write would give it: those of the file it replaces, else 0666 less the
    umask (tempfile's own 0600 would make results and caches private to one user).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix + TMP_SUFFIX, dir=path.parent)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.fchmod(fd, mode)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder, max_age_sec: float = 3600.0) -> list:
    """Deletes temporary files of `atomic_path` in `folder` older than `max_age_sec` (left by a killed run; a live
    writer renames its file within seconds). Returns the paths removed."""
    import time

    removed = []
    now = time.time()
    for tmp in Path(folder).glob(f'.*{TMP_SUFFIX}') if Path(folder).is_dir() else ():
        try:
            if now - tmp.stat().st_mtime > max_age_sec:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another process cleaned or renamed it meanwhile
            pass
    return removed


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def locked(path):
    """An exclusive advisory lock on `path` + '.lock', so parallel runs serialise their appends."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f'.{path.name}.lock', 'a') as lock:  # hidden, beside the file it guards
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
