"""Union-of-grids sweeps: the expansion behind ``hydra/sweeper=grid`` (hydra_plugins.po_bench_sweeper).

Hydra's basic sweeper runs one cartesian product.  A paper's protocol is usually a *union* of
products: each baseline has its own hyperparameter grid (SimPO's Table 3), and some settings pin a
method's values per model (SimPO's own beta/gamma/lr per model).  A grid sweep is

    params:  {key: sweep}            crossed with every grid (e.g. seed: 0,1)
    grids:   [{key: sweep, ...}, ...] each a cartesian product; the jobs are their union

with Hydra's override syntax for each value (``a,b,c``, ``range(...)``, ``choice(...)``).  Overrides
on the command line are crossed in like ``params``, except a key that a grid sweeps itself: then
the command line *selects* among that grid's values (``loss=dpo`` runs only the DPO grid;
``loss.lr=1e-6`` only that column of it).  Identical jobs are launched once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

from hydra.errors import CompactHydraException


class SweepError(CompactHydraException, ValueError):
    """A sweep that cannot be expanded: reported as one line (``po-bench: config error: ...``), exit 2."""


def _values(key: str, value: str, parse: Callable[[list[str]], list]) -> list[str]:
    """Hydra's own parser expands one ``key=value`` into its list of ``key=v`` strings."""
    (ov,) = parse([f"{key}={value}"])
    if ov.is_sweep_override():
        if not ov.is_discrete_sweep():
            raise SweepError(f"{key}={value}: only discrete sweeps (a,b / range / choice) are supported in grids")
        return [str(v) for v in ov.sweep_string_iterator()]
    return [ov.get_value_element_as_str()]


def expand(
    params: Mapping[str, str] | None,
    grids: Sequence[Mapping[str, str]] | None,
    arguments: Iterable[str],
    parse: Callable[[list[str]], list],
) -> list[list[str]]:
    """Every job's override list.  ``parse`` is Hydra's ``OverridesParser.parse_overrides``."""

    def norm_key(k: str) -> str:
        return parse([f"{k}=0"])[0].get_key_element() if not k.startswith(("+", "~")) else k

    base: dict[str, list[str]] = {}
    for k, v in (params or {}).items():
        base[norm_key(k)] = _values(k, str(v), parse)
    cli: dict[str, list[str]] = {}
    for raw in arguments:
        (ov,) = parse([raw])
        k = ov.get_key_element()
        cli[k] = (
            [str(v) for v in ov.sweep_string_iterator()]
            if ov.is_sweep_override() and ov.is_discrete_sweep()
            else [ov.get_value_element_as_str()]
        )
        if ov.is_sweep_override() and not ov.is_discrete_sweep():
            raise SweepError(f"{raw}: only discrete sweeps are supported")
    jobs: list[list[str]] = []
    seen: set[tuple] = set()
    grid_list = [dict(g) for g in (grids or [])] or [{}]
    selecting: set[str] = set()
    for grid in grid_list:
        axes: dict[str, list[str]] = dict(base)
        own = set()
        for k, v in grid.items():
            own.add(norm_key(k))
            axes[norm_key(k)] = _values(k, str(v), parse)
        empty = False
        for k, vals in cli.items():
            if k in own:  # the grid sets this key itself: the command line selects among its values
                selecting.add(k)
                keep = [v for v in axes[k] if v in vals]
                if not keep:
                    empty = True
                    break
                axes[k] = keep
            else:
                axes[k] = vals
        if empty:
            continue
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            job = tuple(f"{k}={v}" for k, v in zip(keys, combo))
            if job not in seen:
                seen.add(job)
                jobs.append(list(job))
    if not jobs:
        sel = ", ".join(f"{k}={','.join(v)}" for k, v in cli.items() if k in selecting)
        raise SweepError(f"no job left: {sel} matches no grid point")
    return jobs
