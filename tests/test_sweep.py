"""po_bench.results.sweep: the union-of-grids expansion behind ``hydra/sweeper=grid`` (each grid a product,
the jobs their union, ``params`` and the command line crossed in, a command-line key that a grid sweeps
selecting inside it).  Every paper preset expanded by it: tests/test_presets.py."""

from __future__ import annotations

import pytest

from po_bench.results.sweep import SweepError, expand

from .helpers import parse_overrides as _parse


def test_expand_is_a_union_of_products_with_params_crossed_in():
    jobs = expand({"seed": "0,1"}, [{"loss": "dpo", "loss.beta": "0.1,0.3"}, {"loss": "simpo"}], [], _parse)
    assert sorted(map(tuple, jobs)) == sorted(
        [
            ("seed=0", "loss=dpo", "loss.beta=0.1"),
            ("seed=0", "loss=dpo", "loss.beta=0.3"),
            ("seed=1", "loss=dpo", "loss.beta=0.1"),
            ("seed=1", "loss=dpo", "loss.beta=0.3"),
            ("seed=0", "loss=simpo"),
            ("seed=1", "loss=simpo"),
        ]
    )


def test_expand_command_line_selects_inside_grids_and_crosses_elsewhere():
    grids = [{"loss": "dpo", "loss.beta": "0.1,0.3"}, {"loss": "simpo", "+setting": "a"}]
    params = {"+setting": "a,b"}
    # loss=dpo selects the DPO grid; train.max_steps (in no grid) is crossed into every job
    jobs = expand(params, grids, ["loss=dpo", "train.max_steps=2"], _parse)
    assert {j[-1] for j in jobs} == {"train.max_steps=2"} and len(jobs) == 4
    assert all("loss=dpo" in j for j in jobs)
    # a grid that pins +setting=a is dropped when the command line asks for b
    jobs = expand(params, grids, ["+setting=b"], _parse)
    assert not any("loss=simpo" in j for j in jobs) and len(jobs) == 2
    with pytest.raises(SweepError, match="no job left: loss=kto matches no grid point"):
        expand(params, grids, ["loss=kto"], _parse)


def test_expand_without_grids_is_the_basic_sweepers_product():
    jobs = expand({"loss": "dpo,ipo"}, [], ["seed=0,1,2"], _parse)
    assert len(jobs) == 6 and ["loss=ipo", "seed=2"] in jobs


def test_expand_deduplicates_identical_jobs():
    assert len(expand({}, [{"loss": "dpo"}, {"loss": "dpo,ipo"}], [], _parse)) == 2
