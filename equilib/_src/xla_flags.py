"""The XLA:CPU flag equilib sets when it is imported, so that a plain ``import equilib`` runs
the fastest exact CPU path measured (``benchmarks/RESULTS.md``, "Default path").

XLA:CPU's YNNPACK fusions (jaxlib 0.10) make its convolutions ~3.5x slower on the machines
measured; ``--xla_cpu_experimental_ynn_fusion_type=`` turns them off. XLA reads ``XLA_FLAGS``
once, when the first backend starts, so the flag is added to the environment at ``import
equilib`` unless:

* ``EQUILIB_XLA_FLAGS=0`` (or ``off``/``false``/``no``) opts out;
* ``XLA_FLAGS`` already names the flag (the user decides);
* the jaxlib build does not know the flag (an unknown flag aborts XLA): it is set for the
  jaxlib versions it was run on (:data:`TESTED_JAXLIB`) and, for others, only when the flag's
  name is found in jaxlib's shared library;
* a JAX backend has already started (then it is too late: one :class:`PerformanceWarning`
  says so, and ``XLA_FLAGS`` is left as it was, so that :func:`equilib.functional.choose_impl`
  keeps the im2col path that is faster under the fusions).

This module imports nothing from JAX at module level: ``equilib/__init__.py`` runs
:func:`configure_xla` before anything imports jax.
"""

from __future__ import annotations

import mmap
import os
import sys
import warnings

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}="
OPT_OUT_ENV = "EQUILIB_XLA_FLAGS"
TESTED_JAXLIB = ("0.10.2",)


class PerformanceWarning(UserWarning):
    """equilib could not select its fastest path: a JAX backend started before ``import
    equilib``, so the XLA:CPU flag it sets could not take effect (``equilib.XLA_SETUP`` is then
    ``"too-late"``). Import equilib before running any JAX computation, or set ``XLA_FLAGS``
    yourself; ``EQUILIB_XLA_FLAGS=0`` opts out (and silences it).

    Example:
        >>> import equilib
        >>> equilib.XLA_SETUP in ("set", "user", "opted-out", "unsupported", "too-late", "no-jaxlib")
        True
        >>> issubclass(equilib.PerformanceWarning, UserWarning)
        True
    """


def configure_xla(environ=None) -> str:
    """Add the XLA:CPU flag to ``XLA_FLAGS`` if it can still take effect (see the module).

    Args:
        environ: the environment to read and change (default ``os.environ``).

    Returns:
        What was done: ``"set"``, ``"opted-out"``, ``"user"`` (``XLA_FLAGS`` names the flag),
        ``"unsupported"`` (jaxlib does not know the flag), ``"too-late"`` (a backend had started;
        a :class:`PerformanceWarning` is issued) or ``"no-jaxlib"``.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return "opted-out"
    flags = env.get("XLA_FLAGS", "")
    if any(f.startswith(FLAG) for f in flags.split()):
        return "user"
    known = jaxlib_knows_flag()
    if known is None:
        return "no-jaxlib"
    if not known:
        return "unsupported"
    if _backend_started():
        warnings.warn(f"equilib: a JAX backend started before `import equilib`, so it could not set "
                      f"XLA_FLAGS={FLAG} (XLA:CPU convolutions ~3.5x faster); import equilib first, set "
                      f"the flag yourself, or set {OPT_OUT_ENV}=0 to silence this", PerformanceWarning,
                      stacklevel=3)
        return "too-late"
    env["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return "set"


def jaxlib_knows_flag() -> bool | None:
    """Whether the installed jaxlib accepts ``--xla_cpu_experimental_ynn_fusion_type``: True for
    the versions it was run on, else whether its name is in jaxlib's largest shared library
    (a one-off scan, ~0.3 s); None without jaxlib."""
    from importlib import metadata

    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None
    if version in TESTED_JAXLIB:
        return True
    try:
        dist = metadata.distribution("jaxlib")
        libs = [str(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".so")]
        lib = max((p for p in libs if os.path.exists(p)), key=os.path.getsize, default=None)
        if lib is None:
            return False
        with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(FLAG_NAME.encode()) >= 0
    except (OSError, ValueError):
        return False


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # no public API tells; if this moves in a later jax, assume not started
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False
