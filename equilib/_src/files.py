"""Files and folders: where a folder is (argument, environment variable, default) and writing a
file so that it is either complete or absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "resolve_dir"]


def resolve_dir(path: str | os.PathLike | None, *, argument: str, env: str, default: str | os.PathLike) -> Path:
    """An absolute folder: ``path`` if given, else ``$<env>`` if set and not empty, else ``default``.

    ``~`` is expanded and a relative path is taken relative to the current directory *now* and
    normalised (``..`` removed; symbolic links are kept), so the result stays valid if the
    working directory changes later and can be turned into a ``file://`` URL.

    Args:
      path: the caller's argument (str or ``os.PathLike``), or None to look further.
      argument: the argument's name, for the error message.
      env: the environment variable consulted when ``path`` is None.
      default: the folder when neither is given.

    Returns:
      The folder as an absolute :class:`pathlib.Path` (it need not exist).

    Raises:
      TypeError: ``path`` is neither None nor a path.

    Example:
      >>> import os
      >>> from equilib._src.files import resolve_dir
      >>> resolve_dir("data/../mnist", argument="data_dir", env="UNSET_VARIABLE_X", default="~") \\
      ...     == Path(os.getcwd()) / "mnist"
      True
    """
    if path is None:
        path = os.environ.get(env) or default
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{argument}` must be a path (str or os.PathLike) or None, got {type(path).__name__}")
    return Path(os.path.abspath(Path(path).expanduser()))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the complete new file or untouched.

    The bytes go to a temporary file in the same folder (created if missing), are flushed to
    disk, and the file is renamed onto ``path`` with ``os.replace`` (atomic on POSIX and
    Windows); on any failure the temporary file is removed.

    Args:
      path: the file to write.
      data: its new content.

    Example:
      >>> import tempfile
      >>> from equilib._src.files import atomic_write
      >>> with tempfile.TemporaryDirectory() as d:
      ...     atomic_write(Path(d) / "sub" / "f.bin", b"abc")
      ...     (Path(d) / "sub" / "f.bin").read_bytes(), sorted(p.name for p in (Path(d) / "sub").iterdir())
      (b'abc', ['f.bin'])
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
