"""Byte-level access to where the store lives: a local directory or any Zarr store.

Two implementations of one small interface, because the two kinds of place differ in what they
can promise:

- ``LocalBackend`` (a path): chunk files are written with plain ``open``/``write`` (no per-call
  event-loop hop), and a data set is written under a temporary name and *renamed* into place,
  so a killed process never leaves a half-written data set under its final name.
- ``ZarrBackend`` (``memory://``, fsspec URLs; in ``zarr_backend.py``): everything goes
  through the Zarr store; there is no rename, so data sets are written in place and the
  ``complete`` attribute, written last, is the only truth.

Zarr metadata documents are always created through ``zarr_store`` with Zarr's own API.

Safety of local paths: every key is a relative ``/``-separated path; ``..``, ``.``, empty and
NUL components are refused, and so is any *symbolic link* below the root (the root itself may
be a link). A store can therefore never read, write, list into or delete anything outside its
root, whatever someone put into it by hand. Operating-system errors (disk full, permission
denied, a file where a directory should be) are raised as ``StorageIOError``, which is both a
``StorageError`` and an ``OSError`` (``errno`` kept) and names the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import functools
import os
import shutil
import stat
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from strax_storage.errors import BadObject, StorageError, StorageIOError, UnsafePath, WriteLost

if TYPE_CHECKING:  # pragma: no cover - Zarr is imported where a Zarr store is used
    from zarr.abc.store import Store as ZarrStore

__all__ = [
    "Backend",
    "Bytes",
    "ClaimsKept",
    "LocalBackend",
    "StorageIOError",
    "UnsafePath",
    "check_relative",
]

Bytes = bytes | bytearray | memoryview


def io_error(exc: OSError, action: str, path: object) -> StorageIOError:
    """``exc`` as a StorageIOError saying what was being done to which path."""
    what = exc.strerror or type(exc).__name__
    return StorageIOError(exc.errno or 0, f"cannot {action}: {what}", str(path))


ClaimsKept = Literal["file", "process"]
"""Where a store's claims live: ``file``, a small object next to the data set it claims (any
process, any host, that sees the store sees it); ``process``, an in-process table (for a
store that lives in one process, as a memory store)."""


class Backend(ABC):
    """Read/write/list/delete whole objects under ``/``-separated keys relative to the root.

    Backends declare what they can do in capability attributes, so that callers never test
    their concrete type: ``supports_rename``, ``has_mtime``, ``claims_kept`` and
    ``symlink_under`` (which only a store that can hold symbolic links overrides).
    """

    url: str
    readonly: bool
    zarr_store: ZarrStore
    supports_rename: bool = False
    """``rename_tree`` moves a tree atomically: data sets are written under a temporary name
    and renamed into place, so a killed writer never leaves one half-written under its key."""
    has_mtime: bool = False
    """``mtime`` and ``touch`` keep real modification times (a claim's heartbeat is its mtime)."""
    claims_kept: ClaimsKept = "file"
    """Where the store's claims live (see ``ClaimsKept``)."""

    @property
    def in_place(self) -> bool:
        """True if data sets are written at their final key (no atomic rename available)."""
        return not self.supports_rename

    def symlink_under(self, prefix: str) -> str | None:
        """A symbolic link at or below ``prefix`` (which plain Zarr would follow), or None.

        None on stores that cannot hold links.
        """
        return None

    def where(self, key: str) -> str:
        """Human-readable location of ``key`` for error messages."""
        return f"{self.url.rstrip('/')}/{key}"

    @abstractmethod
    def read(self, key: str, limit: int | None = None) -> bytes | None:
        """The object's bytes, or None if it does not exist.

        BadObject if it is not a regular file (never blocks on a FIFO) or, with ``limit``, if
        it holds more than ``limit`` bytes (checked before reading it where the store can).
        """

    @abstractmethod
    def write(self, key: str, parts: Sequence[Bytes], *, within: str | None = None) -> None:
        """Create or replace the object ``key`` with the concatenation of ``parts``.

        ``within``: a directory that must still exist; directories below it are created as
        needed, but never ``within`` itself (WriteLost if it is gone). A writer whose
        temporary directory was cleaned up behind it must not silently re-create it.
        """

    def write_atomic(self, key: str, data: bytes, *, within: str | None = None) -> None:
        """Replace ``key`` so that readers see either the old or the new bytes, never a mix
        (``within`` as for ``write``)."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        buf = default_buffer_prototype().buffer.from_bytes(data)
        sync(self.zarr_store.set(key, buf))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` holding ``data`` unless it exists; True if this call created it.

        Atomic where the store can do it (local files, memory); elsewhere best effort.
        """
        if self.read(key) is not None:
            return False
        self.write(key, [data])
        return True

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` ("" for the root); [] if there is nothing there."""

    @abstractmethod
    def delete_tree(self, prefix: str) -> None:
        """Delete everything under ``prefix`` (no error if nothing is there)."""

    def delete(self, key: str) -> None:
        """Delete the single object ``key`` (no error if it is not there)."""
        from zarr.core.sync import sync

        sync(self.zarr_store.delete(key))

    def rename_tree(self, src: str, dst: str) -> None:
        """Atomically move ``src`` to the (absent) ``dst``; only where ``supports_rename``."""
        raise NotImplementedError(f"{type(self).__name__} cannot rename")

    def exists_tree(self, prefix: str) -> bool:
        """Whether anything is stored under ``prefix``."""
        return bool(self.children(prefix))

    def mtime(self, key: str) -> float | None:
        """Last modification time of ``key`` (seconds since the epoch), None if unknown."""
        return None

    def touch(self, key: str) -> None:  # noqa: B027 - optional, a no-op by default
        """Set the modification time of ``key`` to now (where the store has one)."""


def check_relative(key: str) -> list[str]:
    parts = key.split("/") if key else []
    for part in parts:
        if part in ("", ".", "..") or "\x00" in part:
            raise UnsafePath(f"invalid store key {key!r}: empty, '.', '..' or NUL component")
    return parts


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    """libc's ``renameat2`` (Linux, glibc 2.28+), or None where there is none."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (see ``LocalBackend.rename_tree``)."""
    fn = _renameat2()
    if fn is not None:
        rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno_mod.ENOSYS, errno_mod.EINVAL, errno_mod.ENOTSUP):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
        # the file system cannot do it: fall back to os.rename
    os.rename(src, dst)


class LocalBackend(Backend):
    """A directory on the local filesystem."""

    supports_rename = True
    has_mtime = True
    claims_kept: ClaimsKept = "file"

    def __init__(self, root: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)
        self.readonly = readonly

    @functools.cached_property
    def zarr_store(self) -> ZarrStore:  # type: ignore[override]
        """Zarr's store of the directory, made on first use (listing needs no Zarr)."""
        from zarr.storage import LocalStore

        return LocalStore(self.root, read_only=self.readonly)

    # ------------------------------------------------------------------ path safety
    def safe_path(self, key: str, *, final_may_be_link: bool = False) -> Path:
        """``root/key`` after checking that no existing component below the root is a symlink.

        With ``final_may_be_link`` the last component may be a link (to delete or rename the
        link itself, which never touches its target).
        """
        parts = check_relative(key)
        path = self.root
        for i, part in enumerate(parts):
            path = path / part
            if final_may_be_link and i == len(parts) - 1:
                break
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return self.root.joinpath(*parts)  # nothing further exists: nothing to follow
            except OSError as e:
                raise io_error(e, "inspect", path) from e
            if stat.S_ISLNK(mode):
                raise UnsafePath(
                    f"refusing to follow the symbolic link {path} -> {os.readlink(path)!r} "
                    f"inside store {self.root}"
                )
        return path

    def where(self, key: str) -> str:
        return str(self.root / key)

    # ------------------------------------------------------------------ objects
    def read(self, key: str, limit: int | None = None) -> bytes | None:
        path = self.safe_path(key)
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno_mod.ELOOP:
                raise UnsafePath(
                    f"refusing to follow the symbolic link {path} inside store {self.root}"
                ) from None
            raise io_error(e, "read", path) from e
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            raise io_error(e, "inspect", path) from e
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            return None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise BadObject(f"{path} in store {self.root} is not a regular file; not read")
        if limit is not None and st.st_size > limit:
            os.close(fd)
            raise BadObject(
                f"{path} in store {self.root} holds {st.st_size} bytes, more than the "
                f"{limit} allowed for it; not read"
            )
        try:
            with open(fd, "rb") as f:
                return f.read()
        except IsADirectoryError:
            return None
        except OSError as e:
            raise io_error(e, "read", path) from e

    def _open_new(self, path: Path, flags: int, within: str | None = None) -> int:
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:
            if within is None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise io_error(e, "create directory", path.parent) from e
            else:
                self._mkdirs_below(self.safe_path(within), path.parent)
            return os.open(path, flags, 0o666)

    def _mkdirs_below(self, anchor: Path, directory: Path) -> None:
        """Create ``directory`` and its missing parents below ``anchor``, never ``anchor``.

        One ``mkdir`` at a time from the anchor down: if the anchor was deleted, the first
        ``mkdir`` fails, so nothing behind a cleanup is ever re-created.
        """
        rel = directory.relative_to(anchor)
        here = anchor
        for part in rel.parts:
            here = here / part
            try:
                os.mkdir(here)
            except FileExistsError:
                continue
            except FileNotFoundError:
                raise WriteLost(
                    f"the temporary directory {anchor} was removed: claim lost (another "
                    "writer broke this writer's claim and cleaned up its work)"
                ) from None
            except OSError as e:
                raise io_error(e, "create directory", here) from e
        if not anchor.is_dir():
            raise WriteLost(f"the temporary directory {anchor} was removed: claim lost")

    def write(self, key: str, parts: Sequence[Bytes], *, within: str | None = None) -> None:
        path = self.safe_path(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = self._open_new(path, flags, within)
            with open(fd, "wb") as f:
                for part in parts:
                    f.write(part)
        except StorageError:
            raise
        except OSError as e:
            raise io_error(e, "write", path) from e

    def write_atomic(self, key: str, data: bytes, *, within: str | None = None) -> None:
        path = self.safe_path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            self.write(str(tmp.relative_to(self.root)), [data], within=within)
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise io_error(e, "replace", path) from e
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self.safe_path(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = self._open_new(path, flags)
        except FileExistsError:
            return False
        except StorageError:
            raise
        except OSError as e:
            raise io_error(e, "create", path) from e
        opened = False
        try:
            with open(fd, "wb") as f:
                opened = True  # f owns fd from here on and closes it
                f.write(data)
        except BaseException as e:
            # Never leave an empty exclusive file behind (e.g. a break lock nobody removes),
            # whatever stopped the write.
            with contextlib.suppress(BaseException):
                if not opened:
                    os.close(fd)
                path.unlink()
            if isinstance(e, OSError):
                raise io_error(e, "write", path) from e
            raise
        return True

    def delete(self, key: str) -> None:
        path = self.safe_path(key, final_may_be_link=True)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            raise io_error(e, "delete", path) from e

    def mtime(self, key: str) -> float | None:
        path = self.safe_path(key, final_may_be_link=True)
        try:
            return os.lstat(path).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise io_error(e, "inspect", path) from e

    def touch(self, key: str) -> None:
        path = self.safe_path(key)
        now = time.time()
        try:
            os.utime(path, (now, now), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            raise io_error(e, "touch", path) from e

    # ------------------------------------------------------------------ trees
    def children(self, prefix: str) -> list[str]:
        path = self.safe_path(prefix)  # refuses a link anywhere below the root, prefix included
        try:
            with os.scandir(path) as it:
                return [e.name for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise io_error(e, "list", path) from e

    def delete_tree(self, prefix: str) -> None:
        """Delete ``prefix``; a symbolic link is unlinked, never followed (nor anything in it)."""
        path = self.safe_path(prefix, final_may_be_link=True)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise io_error(e, "inspect", path) from e
        try:
            if stat.S_ISDIR(mode):
                # rmtree never follows symbolic links inside the tree (fd-based on Linux)
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise io_error(e, "delete", getattr(e, "filename", None) or path) from e

    def rename_tree(self, src: str, dst: str) -> None:
        # Never clobbers: renameat2(RENAME_NOREPLACE) where the kernel and file system have it
        # (FileExistsError if dst exists at all); elsewhere os.rename, which fails on a
        # non-empty directory (ENOTEMPTY) and replaces only an empty one.
        a = self.safe_path(src, final_may_be_link=True)
        b = self.safe_path(dst, final_may_be_link=True)
        try:
            _rename_noreplace(a, b)
        except FileNotFoundError:
            raise
        except OSError as e:
            if e.errno in (errno_mod.ENOTEMPTY, errno_mod.EEXIST):
                raise
            raise io_error(e, f"rename {a} to", b) from e

    def symlink_under(self, prefix: str) -> str | None:
        top = self.safe_path(prefix)  # refuses a link anywhere from the root to prefix
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                if os.path.islink(os.path.join(dirpath, name)):
                    return os.path.join(dirpath, name)
        return None

    def exists_tree(self, prefix: str) -> bool:
        try:
            os.lstat(self.safe_path(prefix, final_may_be_link=True))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            raise io_error(e, "inspect", self.root / prefix) from e
        return True
