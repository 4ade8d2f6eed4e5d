"""``hydra/sweeper=grid``: Hydra's basic sweeper over a union of cartesian grids (po_bench.results.sweep).

It launches through whichever ``hydra/launcher`` is configured (basic, joblib, submitit), writes
``multirun.yaml`` like the basic sweeper, and honours ``max_batch_size``.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.po_bench_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    grids: list[dict[str, Any]] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="po_bench")


class GridSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        grids: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = [dict(g) for g in (grids or [])]

    def sweep(self, arguments: list[str]) -> Any:
        from po_bench.results.sweep import expand

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = expand(self.params, self.grids, arguments, parser.parse_overrides)
        n = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else len(jobs)
        batches = [jobs[i : i + n] for i in range(0, len(jobs), n)]
        # the basic sweeper's loop, over the precomputed batches
        self.params = {}
        self.split_arguments = lambda overrides, max_batch_size: batches  # type: ignore[assignment]
        return super().sweep([])
