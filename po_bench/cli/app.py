"""The Hydra app: ``po-bench [overrides]`` runs one configuration, ``po-bench -m ...`` a sweep.

Every run writes ``run.json`` in its Hydra output folder: status ``done`` or ``failed`` (with the
error), the resolved config, package versions and the metrics.  Inside a multirun a failing job
is recorded as failed and the sweep goes on; a single run exits non-zero.  Configuration errors
are one line on stderr and exit code 2.  A run whose LLM judge spent its budget
(``judge.max_requests`` / ``judge.max_cost_usd``) is recorded ``failed`` with that one line as its
error and all its metrics (the judged part, marked ``budget_exhausted``, and the count of judgments
not made); a single run then exits with code 3.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import traceback
from pathlib import Path

import hydra
import hydra._internal.utils as hydra_utils
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.errors import CompactHydraException, ConfigCompositionException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from po_bench.cli.cache import main as cache_main
from po_bench.config import ENV_NAME, NOT_SECRET, SECRET_KEY, ConfigError, available_cores, register
from po_bench.results import sweep_report, tracking
from po_bench.results.record import write_run_record

log = logging.getLogger("po_bench")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register()


def _verbose() -> bool:
    return bool(os.environ.get("PO_BENCH_TRACEBACK")) or bool(HydraConfig.get().verbose)


def run_job(cfg: DictConfig) -> dict | None:
    from po_bench import pipeline  # lazy: the stages, data sources and judges (~0.1 s): not for --help

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    config = OmegaConf.to_container(cfg, resolve=True)
    previous = _finished_record(out_dir, config)
    if multirun:  # the end-of-sweep report counts this launch's jobs by this mark, not by file times
        sweep_report.mark_job(hc.sweep.dir, out_dir, skipped=previous is not None)
    if previous is not None:  # relaunching a sweep: runs already done are skipped
        log.info("already done, skipped: %s", out_dir / "run.json")
        return previous["metrics"]
    packed = packed_threads(int(cfg.threads), hc.launcher, available_cores())
    if packed != cfg.threads:  # one of n_jobs runs at once on this machine: its share of the cores
        log.info(
            "threads=0 under hydra/launcher=parallel (n_jobs=%s): %d torch thread(s) per run",
            hc.launcher.n_jobs,
            packed,
        )
        cfg.threads = packed
    try:
        check_preset(cfg, hc.runtime.choices.get("experiment"))
        metrics = pipeline.run(cfg, out_dir)
    except ConfigError as e:  # nothing ran: no run folder is left behind (tables would count it)
        removed = _remove_config_error_folder(out_dir)
        where = f"; its folder {out_dir} was removed" if removed else ""
        if multirun:
            sweep = Path(hc.sweep.dir).absolute()
            job = out_dir.relative_to(sweep) if out_dir.is_relative_to(sweep) else out_dir.name
            sweep_report.record_config_error(sweep, str(job), str(e))
            log.error("config error: %s%s", e, where)
            return None
        print(f"po-bench: config error: {e}{where}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # recorded, then the sweep goes on
        msg = f"{type(e).__name__}: {e}"
        write_run_record(
            out_dir, status="failed", config=config, error=msg, extra={"traceback": traceback.format_exc()}
        )
        _track(cfg, out_dir, config, "failed", {}, [], error=msg)
        log.error("run failed: %s (see %s)", msg, out_dir / "run.json")
        if _verbose():
            traceback.print_exc()
        if multirun:
            return None
        sys.exit(1)
    history = metrics.pop("history", [])
    budget_stop = (metrics.get("judge_budget") or {}).get("message")
    if budget_stop:  # the judge's budget ran out: failed, one line, every metric and count kept
        write_run_record(
            out_dir, status="failed", config=config, metrics=metrics, error=budget_stop, extra={"history": history}
        )
        _track(cfg, out_dir, config, "failed", metrics, history, error=budget_stop)
        log.error("run stopped: %s (see %s)", budget_stop, out_dir / "run.json")
        if multirun:
            return None
        print(f"po-bench: {budget_stop}", file=sys.stderr)
        sys.exit(3)
    from po_bench.judges.runner import judging_incomplete  # lazy: as pipeline above

    missing = judging_incomplete(metrics)  # judgments still missing after retries: partial, with the counts
    status = "partial" if missing else "done"
    if missing:
        log.warning("run recorded partial: %s", missing)
    write_run_record(
        out_dir,
        status=status,
        config=config,
        metrics=metrics,
        extra={"history": history},
        **({"error": missing} if missing else {}),
    )
    _track(cfg, out_dir, config, status, metrics, history, **({"error": missing} if missing else {}))
    m = metrics
    log.info(
        "done: loss=%s gold_reward=%s (sft %s) win_rate_vs_sft=%s kl=%s -> %s",
        cfg.loss.name,
        _num(m.get("gold_reward")),
        _num(m.get("gold_reward_sft")),
        _num(m.get("win_rate_vs_sft")),
        _num(m.get("kl_to_ref"), 2),
        out_dir / "run.json",
    )
    reused = _reuse_line(m.get("artifacts"))
    if reused:
        log.info(reused)
    return m


def packed_threads(threads: int, launcher, cores: int) -> int:
    """The torch threads of one run: ``threads`` as set, but ``threads=0`` ("every core") under
    hydra/launcher=parallel, where ``n_jobs`` runs share this machine's ``cores``, is each run's share,
    cores // n_jobs (at least 1; joblib's negative n_jobs count back from the cores: -1 is all)."""
    if threads or launcher is None or "JoblibLauncher" not in str(launcher.get("_target_", "")):
        return threads
    n_jobs = int(launcher.get("n_jobs") or 1)
    if n_jobs < 0:
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // n_jobs) if n_jobs > 1 else threads


def _num(x, digits: int = 3) -> str:
    """A metric for the log: 'n/a' when the run has none (judge=none, stages switched off)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    return f"{x:.{digits}f}"


def _reuse_line(artifacts: dict | None) -> str:
    """One line on what came from the artifact store (empty when the run built everything)."""
    hits = sorted({h.split("/")[0] for h in (artifacts or {}).get("hits") or []})
    built = sorted({b.split("/")[0] for b in (artifacts or {}).get("built") or []})
    if not hits:
        return ""
    if not built:
        return f"reused from the artifact store: {', '.join(hits)} (nothing was rebuilt)"
    return f"reused from the artifact store: {', '.join(hits)}; built: {', '.join(built)}"


def _remove_config_error_folder(out_dir: Path) -> bool:
    """Remove the folder Hydra made for a run that failed its config validation, when it holds
    nothing but what Hydra and this run wrote (.hydra/, the job log, wandb/); a folder that holds an
    earlier run's files is left alone."""
    if not out_dir.is_dir():
        return False
    (out_dir / sweep_report.JOB_MARKER).unlink(missing_ok=True)  # the config error is counted, not the folder
    own = {".hydra", "wandb", f"{HydraConfig.get().job.name}.log"}
    if any(p.name not in own for p in out_dir.iterdir()):
        return False
    shutil.rmtree(out_dir, ignore_errors=True)
    return not out_dir.exists()


def check_preset(cfg, experiment: str | None) -> None:
    """experiment=<name> needs conf/preset/<name>/<scale>.yaml (its defaults list marks it optional)."""
    if not experiment:
        return
    if cfg.preset.name != experiment or cfg.preset.scale != cfg.scale.name:
        have = sorted(p.stem for p in (Path(CONF_DIR) / "preset" / experiment).glob("*.yaml"))
        raise ConfigError(
            f"experiment={experiment} has no scale={cfg.scale.name} preset "
            f"(conf/preset/{experiment}/ has: {', '.join(have) or 'nothing'})"
        )


def _finished_record(out_dir: Path, config: dict) -> dict | None:
    path = out_dir / "run.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") == "done" and rec.get("config") == config else None


def _track(cfg, out_dir: Path, config: dict, status: str, metrics: dict, history: list, error=None) -> None:
    """Log the run to wandb (offline without an API key); tracking problems never fail a run."""
    group, name = tracking.group_and_name(cfg, out_dir)
    try:
        where = tracking.log_run(
            cfg.tracking, out_dir, group, name, config, status, metrics, history, out_dir / "samples.jsonl", error
        )
        if where and "offline-run-" in Path(where).name:  # wandb's own hint is silenced (WANDB_SILENT)
            log.info("wandb offline run: %s (upload: wandb sync %s)", where, where)
    except Exception as e:  # noqa: BLE001
        log.warning("tracking failed (the run itself is recorded): %s: %s", type(e).__name__, e)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict | None:
    return run_job(cfg)


def _one_line_config_errors() -> None:
    """Make Hydra's composition errors (unknown group option, unknown key, bad override) one line
    on stderr with exit code 2, like po-bench's own validation.  HYDRA_FULL_ERROR=1 or
    PO_BENCH_TRACEBACK=1 keep Hydra's own report."""
    original = hydra_utils.run_and_report

    def run_and_report(func):
        try:
            return func()
        except (
            CompactHydraException,
            ConfigCompositionException,
            OverrideParseException,
            OmegaConfBaseException,
        ) as ex:
            if os.environ.get("HYDRA_FULL_ERROR") or os.environ.get("PO_BENCH_TRACEBACK"):
                err = ex
                return original(lambda: (_ for _ in ()).throw(err))
            parts = [str(ex)]
            if ex.__cause__ is not None and str(ex.__cause__) not in parts[0]:
                parts.append(str(ex.__cause__))
            lines = [ln.strip() for part in parts for ln in part.splitlines() if ln.strip()]
            lines = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
            msg = " ".join(lines).split(" Config search path:")[0]
            msg = msg.replace(" Available options in", "; available options in").replace(" ;", ";")
            print(f"po-bench: config error: {msg}", file=sys.stderr)
            sys.exit(2)

    hydra_utils.run_and_report = run_and_report


def _one_repository_for_help() -> None:
    """``po-bench --help`` lists every group's options: Hydra answers each of its ~160 questions with a
    fresh deep copy of its config repository (~1.2 s in all).  It asks them all with no overrides, so one
    copy per loader answers them all, with the same answers."""
    original = ConfigLoaderImpl.get_group_options
    repos: dict = {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        if overrides:
            return original(self, group_name, results_filter, config_name, overrides)
        key = (id(self), config_name)
        if key not in repos:
            repos[key] = self._parse_overrides_and_create_caching_repo(config_name, [])[1]
        return repos[key].get_group_options(group_name, results_filter)

    ConfigLoaderImpl.get_group_options = get_group_options


def _refuse_keys_in_overrides(argv: list[str]) -> None:
    """API keys come only from the environment or a key file.  An override that would carry one
    (``judge.api_key=...``, ``+judge.token=...``, an ``api_key_env`` value that is no variable name,
    an ``api_key_file`` that is no file) is refused before Hydra composes or writes anything
    (.hydra/, run.json, wandb), with one line that never echoes the value; exit code 2."""

    def refuse(msg: str) -> None:
        print(f"po-bench: config error: {msg} (the value is not shown: it could be a key)", file=sys.stderr)
        sys.exit(2)

    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        leaf = key.rsplit(".", 1)[-1]
        values = [v.strip() for v in value.split(",") if v.strip() not in ("", "null")]
        if leaf == "api_key_env":
            if any(not ENV_NAME.fullmatch(v) for v in values):
                refuse(f"{key} must name an environment variable (letters, digits, _), not hold the key itself")
        elif leaf == "api_key_file":
            if any(not Path(v).expanduser().is_file() for v in values):
                refuse(f"{key}: no such file")
        elif SECRET_KEY.search(leaf) and key not in NOT_SECRET:
            refuse(
                f"{key}: API keys are never read from the command line or a config; put the key in the "
                "environment variable named by judge.api_key_env or a file named by judge.api_key_file"
            )


def cli() -> None:
    if sys.argv[1:2] == ["cache"]:  # po-bench cache ls|du|verify|gc (po_bench/cli/cache.py)
        sys.exit(cache_main(sys.argv[2:]))
    _refuse_keys_in_overrides(sys.argv[1:])
    _one_line_config_errors()
    if {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):
        _one_repository_for_help()
    main()
    if sweep_report.LAST and sweep_report.LAST["failed"]:  # a sweep with a failed job (summary printed)
        sys.exit(1)


if __name__ == "__main__":
    cli()
