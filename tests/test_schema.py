"""po_bench/data/schema.py: the dataset section's schema and the dataset configs of conf/dataset/, read in
the data layer (sources resolve ``dataset.sft`` with it) without importing the run's config."""

from __future__ import annotations

import pytest

from po_bench.data.formats.base import DataError
from po_bench.data.schema import CONF_DATASET_DIR, DatasetConfig, dataset_config


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF_DATASET_DIR.glob("*.yaml")))
def test_every_dataset_config_merges_onto_the_schema(name):
    cfg = dataset_config(name, max_rows=3)
    assert cfg.max_rows == 3 and cfg.kind in ("world", "hf")
    assert set(cfg.keys()) == set(DatasetConfig.__dataclass_fields__)


def test_an_unknown_dataset_config_names_the_known_ones():
    with pytest.raises(DataError, match=r"no dataset config 'nope' in .*conf/dataset \(known: .*hh_rlhf.*\)"):
        dataset_config("nope")


def test_the_schema_is_the_config_tree_s_dataset_section():
    from po_bench.config import Config

    assert Config.__dataclass_fields__["dataset"].default_factory is DatasetConfig
