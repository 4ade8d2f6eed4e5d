"""Plug-ins: packages outside po-bench add losses, judges and data sources through entry points.

A plug-in package names its module in one of the groups below (``pyproject.toml``:
``[project.entry-points."po_bench.losses"] my_loss = "my_pkg.my_loss"``); importing the module registers
what it defines (``register_loss``, ``@register_judge``, ``@register_source``).  Each registry loads
its group once per process with :func:`load`.  A plug-in that fails to import does not stop the import
of po-bench (a traceback from an unrelated package would hide what went wrong): the failure is kept,
and :func:`check`, which :func:`po_bench.config.validate` calls before anything else, refuses the run
with one line naming the plug-in and its error.  This module imports nothing from po-bench.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

log = logging.getLogger("po_bench")

GROUPS = {"po_bench.losses": "loss", "po_bench.judges": "judge", "po_bench.sources": "data source"}

FAILED: dict[str, str] = {}  # "<group>:<name>" -> the one-line reason, for every plug-in that did not load


class PluginError(ImportError):
    """A plug-in of one of :data:`GROUPS` failed to import."""


def load(group: str) -> list[str]:
    """Import every entry point of ``group``; the values of those that loaded.  Failures are kept in
    :data:`FAILED` (see :func:`check`) and logged, not raised."""
    loaded = []
    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001  (any error of a foreign module: kept, reported by check())
            reason = str(e).splitlines()[0] if str(e) else ""
            FAILED[f"{group}:{ep.name}"] = (
                f"the {GROUPS.get(group, group)} plug-in {ep.name} ({ep.value}, entry point group {group}) "
                f"failed to import: {type(e).__name__}: {reason}"
            )
            log.debug("plug-in %s failed to import", ep.value, exc_info=True)
            continue
        loaded.append(ep.value)
    return loaded


def check() -> None:
    """Raise :class:`PluginError` for the first plug-in that failed to import (its line names the others'
    count), so a run never goes on without a plug-in its environment installed."""
    if FAILED:
        first, *rest = FAILED.values()
        raise PluginError(first + (f" (and {len(rest)} more plug-ins)" if rest else ""))
