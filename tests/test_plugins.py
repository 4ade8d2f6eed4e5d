"""po_bench/plugins.py: a plug-in (loss, judge, data source) that its environment installed but that fails to
import stops the run before any compute with one line naming it, in every entry-point group; the plug-ins
that do import are used as before (the toy plug-ins' own tests: test_losses.py, test_api.py, test_sources.py)."""

from __future__ import annotations

import pytest

from po_bench import plugins

from .conftest import ROOT, run_cli
from .helpers import plugin_env


def test_every_group_has_a_registry_that_loads_it():
    from po_bench.data import sources
    from po_bench.judges import api
    from po_bench.training import losses

    assert set(plugins.GROUPS) == {losses.ENTRY_POINT_GROUP, api.ENTRY_POINT_GROUP, sources.ENTRY_POINT_GROUP}


@pytest.mark.parametrize(
    "group, what, overrides",
    [
        ("po_bench.losses", "loss", ["loss=cdpo"]),  # loaded when a po-bench loss function is looked up
        ("po_bench.judges", "judge", []),  # loaded with the judges' registry
        ("po_bench.sources", "data source", []),  # loaded when dataset.kind is looked up
    ],
)
def test_a_plugin_that_fails_to_import_is_one_config_error_line(group, what, overrides, tmp_path):
    env = plugin_env(tmp_path, group, {"broken": "broken_plugin"})
    site = env["PYTHONPATH"].split(":")[-1]
    (tmp_path / site / "broken_plugin.py").write_text("import a_package_this_environment_lacks\n")
    r = run_cli([*overrides, f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run"], ROOT, env_extra=env)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(
        f"po-bench: config error: the {what} plug-in broken (broken_plugin, entry point group {group}) failed to "
        "import: ModuleNotFoundError: No module named 'a_package_this_environment_lacks'"
    ), lines[-1]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "run").exists()  # before any compute


def test_check_names_the_first_failure_and_counts_the_rest(monkeypatch):
    monkeypatch.setattr(plugins, "FAILED", {})
    plugins.check()  # nothing failed: nothing raised
    monkeypatch.setattr(plugins, "FAILED", {"a:x": "the loss plug-in x failed", "b:y": "the judge plug-in y failed"})
    with pytest.raises(plugins.PluginError, match=r"^the loss plug-in x failed \(and 1 more plug-ins\)$"):
        plugins.check()
