"""Hydra launchers for sweeps: conf/hydra/launcher/{slurm,local,parallel}.yaml on the plugins
hydra-submitit-launcher and hydra-joblib-launcher; a real single-node Slurm cluster
(scripts/slurm_up.sh) runs a sweep through submitit; conf/accelerate/ configs load in accelerate.

The Slurm test starts its own cluster (root; installs Debian's slurm/munge with apt-get if missing)
and stops it, or uses one already up when PO_BENCH_SLURM_CONF names its slurm.conf
(PO_BENCH_SLURM_PARTITION: its partition, default: the cluster's default partition).  A Slurm sweep with a
failing job exits 1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SMALL, read_runs, run_cli

SCRIPTS = ROOT / "scripts"
# the tiny world with one torch thread per run: two runs side by side on two cores.  SFT trains one epoch (25
# steps, not SMALL's 50): these tests claim that a launcher runs a sweep's jobs to the end (side by side, as a
# Slurm array), not anything about how well the policy learned, and the two jobs still overlap (they wait on
# one shared SFT build, and the dpo job trains after it).
WORLD = [o for o in SMALL if not o.startswith(("threads=", "train.sft_epochs="))] + ["threads=1", "train.sft_epochs=1"]
SWEEP = [*WORLD, "loss=sft,dpo", "seed=0"]
SWEEP_TIMEOUT = 240  # a job killed outside Python can leave submitit polling forever


# ---- configs (fast) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, target, values",
    [
        (
            "slurm",
            "SlurmLauncher",
            {
                "timeout_min": 1440,
                "gpus_per_node": 1,
                "cpus_per_task": 8,
                "mem_gb": 64,
                "tasks_per_node": 1,
                "nodes": 1,
                "partition": None,
                "max_num_timeout": 3,
            },
        ),
        ("local", "LocalLauncher", {"timeout_min": 240, "tasks_per_node": 1}),
        ("parallel", "JoblibLauncher", {"n_jobs": 2, "prefer": "processes"}),
    ],
)
def test_launcher_configs_compose(name, target, values, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from po_bench.cli.app import CONF_DIR

    monkeypatch.delenv("PO_BENCH_SLURM_PARTITION", raising=False)
    monkeypatch.delenv("PO_BENCH_SLURM_ACCOUNT", raising=False)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
        assert launcher["_target_"].endswith(target)
        for key, value in values.items():
            assert cfg.hydra.launcher[key] == value, key
        # the plugin's schema types the preset: a misspelt key fails at composition
        with pytest.raises(Exception, match="nosuchkey"):
            compose(
                "config", overrides=[f"hydra/launcher={name}", "hydra.launcher.nosuchkey=1"], return_hydra_config=True
            )
    if name == "slurm":
        monkeypatch.setenv("PO_BENCH_SLURM_PARTITION", "gpu")
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
            assert cfg.hydra.launcher.partition == "gpu"


@pytest.mark.parametrize("path", sorted((ROOT / "conf" / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_configs_load(path):
    """accelerate's own config class (unknown keys fail) and its launch-argument validation."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    parser = launch_command_parser()
    known = {a.dest for a in parser._actions}
    assert set(cfg.deepspeed_config) <= known, set(cfg.deepspeed_config) - known
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "-m", "po_bench"]))
    assert args.num_processes >= 2 and args.mixed_precision == "bf16" and args.module
    if cfg.distributed_type == DistributedType.DEEPSPEED:
        assert args.use_deepspeed and args.zero_stage == int(path.stem[-1])  # deepspeed_zero<N>
    elif path.stem == "fsdp":
        assert cfg.distributed_type == DistributedType.FSDP and args.use_fsdp and args.fsdp_version == 2
    else:
        assert cfg.distributed_type == DistributedType.MULTI_GPU and args.multi_gpu


def test_slurm_scripts_parse():
    for name in ("slurm_up.sh", "slurm_down.sh", "slurm/common.sh"):
        subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True)


# ---- sweeps (slow) ----------------------------------------------------------------------------


def _done_runs(sweep: Path) -> list[dict]:
    runs = read_runs(sweep)
    assert len(runs) == 2, [r["_dir"] for r in runs]
    for r in runs:
        assert r["status"] == "done", r.get("error")
    assert sorted(r["config"]["loss"]["name"] for r in runs) == ["dpo", "sft"]
    return runs


def _tail(paths, n=3000) -> str:
    return "\n".join(f"== {p}\n{p.read_text(errors='replace')[-n:]}" for p in paths if p.is_file())


@pytest.mark.slow
def test_joblib_parallel_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(
        [
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            *SWEEP,
            f"cache_dir={tmp_path}/cache",
            f"hydra.sweep.dir={sweep}",
        ],
        ROOT,
        timeout=SWEEP_TIMEOUT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = _done_runs(sweep)
    assert "Joblib.Parallel(n_jobs=2," in r.stdout + r.stderr
    # the two runs overlapped in time: each ends when its run.json is written (the file's mtime, in ns; not
    # finished_at, which has 1 s resolution) and started its measured total wall time (perf_counter) before
    spans = []
    for x in runs:
        end = (x["_dir"] / "run.json").stat().st_mtime_ns / 1e9
        spans.append((end - x["metrics"]["seconds"]["total"], end))
    (s0, e0), (s1, e1) = sorted(spans)
    assert s1 < e0, f"runs did not overlap: {spans}"


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(
        [
            "-m",
            "hydra/launcher=local",
            *SWEEP,
            f"cache_dir={tmp_path}/cache",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=5",
        ],
        ROOT,
        timeout=SWEEP_TIMEOUT,
    )
    assert r.returncode == 0, r.stderr[-3000:] + _tail((sweep / ".submitit").rglob("*.out"))
    _done_runs(sweep)
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 2


def _port_pair_candidates():
    """Port pairs for slurmctld and slurmd that are free now.  Free now is not free when the daemons bind
    them (another process may take one in between): the fixture below retries with the next pair."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 30000)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", p))
        except OSError:
            continue
        yield port


@pytest.fixture(scope="module")
def slurm_cluster():
    """(SLURM_CONF, partition or None): a cluster already up (PO_BENCH_SLURM_CONF), or one started
    here by scripts/slurm_up.sh in a fresh folder and stopped by scripts/slurm_down.sh."""
    conf = os.environ.get("PO_BENCH_SLURM_CONF")
    if conf:
        assert Path(conf).is_file(), f"PO_BENCH_SLURM_CONF={conf}: no such file"
        yield conf, os.environ.get("PO_BENCH_SLURM_PARTITION") or None
        return
    if os.geteuid() != 0:
        pytest.skip("starting a Slurm cluster needs root (or set PO_BENCH_SLURM_CONF to a running cluster)")
    folder = Path(tempfile.mkdtemp(prefix="po-bench-slurm-", dir="/tmp"))
    folder.chmod(0o755)  # munged: every folder on its socket path must be reachable (x) by all

    def down():
        r = subprocess.run([str(SCRIPTS / "slurm_down.sh"), str(folder)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]

    failures = []
    try:
        for port, _ in zip(_port_pair_candidates(), range(3)):  # a port taken between the check and the bind
            env = dict(os.environ, PO_BENCH_SLURM_PORT=str(port), PO_BENCH_SLURM_PARTITION="debug")
            up = subprocess.run(
                [str(SCRIPTS / "slurm_up.sh"), str(folder)], env=env, capture_output=True, text=True, timeout=600
            )
            if up.returncode == 3:  # packages missing and apt-get could not install them
                pytest.skip(f"slurm/munge not installable here: {up.stderr.strip()[-500:]}")
            if up.returncode == 0:
                break
            failures.append(f"ports {port}/{port + 1}: {up.stderr[-1500:]}")
            down()
            for child in folder.iterdir():  # slurm_up.sh refuses a non-empty folder it did not finish
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            pytest.fail("Slurm did not come up on 3 port pairs:\n" + "\n".join(failures))
        yield up.stdout.strip().splitlines()[-1], "debug"
    finally:
        down()
        shutil.rmtree(folder, ignore_errors=True)


def _slurm_launcher(partition) -> list[str]:
    """The Slurm launcher's settings for the test cluster: one CPU, 2 GB, 5 minutes per job."""
    return [
        f"hydra.launcher.partition={partition or 'null'}",
        "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=5",
    ]


@pytest.mark.slow
def test_submitit_slurm_sweep(tmp_path, slurm_cluster):
    conf, partition = slurm_cluster
    env = {"SLURM_CONF": conf}
    # the jobs run this python (submitit: sys.executable) and unpickle po_bench's task there
    check = subprocess.run(
        [sys.executable, "-c", "import po_bench, submitit, hydra_plugins.hydra_submitit_launcher"],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    sweep = tmp_path / "sweep"
    try:
        r = run_cli(
            [
                "-m",
                "hydra/launcher=slurm",
                *_slurm_launcher(partition),
                *SWEEP,
                f"cache_dir={tmp_path}/cache",
                f"hydra.sweep.dir={sweep}",
            ],
            ROOT,
            env_extra=env,
            timeout=SWEEP_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"sweep on Slurm did not finish in {SWEEP_TIMEOUT}s\n" + _tail(sorted((sweep / ".submitit").rglob("*.out")))
        )
    assert r.returncode == 0, r.stderr[-3000:] + _tail(sorted((sweep / ".submitit").rglob("*.out")))
    _done_runs(sweep)
    # one job array, two tasks <id>_0 and <id>_1, submitted with the launcher's settings and this python
    sub = sweep / ".submitit"
    tasks = sorted(d.name for d in sub.iterdir() if d.is_dir() and "_" in d.name)
    array_id = tasks[0].split("_")[0]
    assert tasks == [f"{array_id}_0", f"{array_id}_1"], tasks
    script = (sub / array_id / f"{array_id}_submission.sh").read_text()
    for line in ("--cpus-per-task=1", "--mem=2GB", "--time=5", f" {sys.executable} -u -m submitit.core._submit"):
        assert line in script, line
    assert (f"--partition={partition}" in script) if partition else ("--partition" not in script)
    assert len(list(sub.rglob("*_result.pkl"))) == 2
    # Slurm itself ran them: both array tasks end COMPLETED (submitit returns once the results are
    # written, a moment before the job steps end; slurmctld keeps ended jobs for MinJobAge=300 s)
    if not os.environ.get("PO_BENCH_SLURM_CONF"):
        for _ in range(60):
            show = subprocess.run(
                ["scontrol", "-o", "show", "job", array_id],
                env=dict(os.environ, **env),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert show.returncode == 0, show.stderr
            states = [w for w in show.stdout.split() if w.startswith("JobState=")]
            if states == ["JobState=COMPLETED"] * 2:
                break
            time.sleep(0.5)
        assert states == ["JobState=COMPLETED"] * 2, show.stdout

    from po_bench.results.writers import write_tables

    paths = write_tables(sweep, name="results")
    md = paths["md"].read_text()
    assert "| SFT |" in md and "| DPO |" in md
    assert len(paths["csv"].read_text().strip().splitlines()) == 1 + 2


@pytest.mark.slow
def test_slurm_sweep_with_a_failing_job_exits_1(tmp_path, slurm_cluster):
    """One job of a Slurm sweep fails at run time (an IPO loss_type TRL does not have, refused when its trainer
    is built): it is recorded failed, the other job is done, and po-bench exits 1 with the error in the summary."""
    conf, partition = slurm_cluster
    sweep = tmp_path / "sweep"
    try:
        r = run_cli(
            [
                "-m",
                "hydra/launcher=slurm",
                *_slurm_launcher(partition),
                *WORLD,
                "train.max_steps=4",
                "loss=ipo",
                "loss.args.loss_type=[ipo],[no_such_loss]",
                f"cache_dir={tmp_path}/cache",
                f"hydra.sweep.dir={sweep}",
            ],
            ROOT,
            env_extra={"SLURM_CONF": conf},
            timeout=SWEEP_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"sweep on Slurm did not finish in {SWEEP_TIMEOUT}s\n" + _tail(sorted((sweep / ".submitit").rglob("*.out")))
        )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:] + _tail(sorted((sweep / ".submitit").rglob("*.out")))
    assert "po-bench sweep: 2 jobs in " in r.stdout and "1 done" in r.stdout and "1 failed" in r.stdout, out[-3000:]
    assert "no_such_loss" in r.stdout and f"po-bench-table {sweep}" in r.stdout
    runs = {json.dumps(x["config"]["loss"]["args"]["loss_type"]): x for x in read_runs(sweep)}
    assert runs['["ipo"]']["status"] == "done", runs['["ipo"]'].get("error")
    assert runs['["no_such_loss"]']["status"] == "failed" and "no_such_loss" in runs['["no_such_loss"]']["error"]
    # both ran as tasks of one Slurm job array (not in this process)
    tasks = sorted(d.name for d in (sweep / ".submitit").iterdir() if d.is_dir() and "_" in d.name)
    assert len(tasks) == 2 and tasks[0].split("_")[0] == tasks[1].split("_")[0], tasks


def test_slurm_jobs_take_their_shape_from_the_launch_and_sweeps_are_chunked():
    """One Slurm job per run with the launch's nodes x GPUs; arrays of at most 1,000 jobs."""
    from hydra import compose, initialize_config_dir

    from hydra_plugins.po_bench_sweeper.grid_sweeper import GridSweeper
    from po_bench.cli.app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "launch=fsdp", "launch.num_machines=2"],
            return_hydra_config=True,
        )
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.tasks_per_node) == (2, 8, 1)
    assert cfg.hydra.sweeper.max_batch_size == 1000
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides([f"seed={','.join(str(i) for i in range(2232))}"])
    batches = GridSweeper.split_arguments(overrides, cfg.hydra.sweeper.max_batch_size)
    assert [len(b) for b in batches] == [1000, 1000, 232]


@pytest.mark.slow
def test_slurm_requeue_resumes_training_from_its_last_checkpoint(tmp_path, slurm_cluster):
    """A job requeued in the middle of training (``scontrol requeue``: what a preemption or a time
    limit with max_num_timeout > 0 does) runs again, reuses every finished artifact and resumes the
    policy from its last complete Trainer checkpoint; the checkpoints are deleted once it is done."""
    conf, partition = slurm_cluster
    env = dict(os.environ, SLURM_CONF=conf, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("PO_BENCH_CACHE", None)
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={partition or 'null'}",
        "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=20",
        "hydra.launcher.max_num_timeout=2",
        "dataset.n_sft=200",
        "dataset.n_pref=256",
        "dataset.n_eval=16",
        "dataset.n_ood=8",
        "train.sft_epochs=1",
        # batch 32: ~10 s of training on an idle 2-core machine (batch 4 trained 300 steps in 5 s, and the
        # requeue, SIGKILL after Slurm's KillWait, landed after the policy was published)
        "train.batch_size=32",
        "train.max_steps=300",
        "train.save_steps=20",
        "train.logging_steps=10",
        "threads=1",
        "tracking=none",
        "generation.progress=false",
        "train.progress=false",
        "loss=dpo",
        f"cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "po_bench", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not list((cache / "v2" / "policy").glob(".*.work/trainer/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no training checkpoint within 10 minutes"
            time.sleep(0.5)
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=30)
        job = jobs.stdout.split()[0]
        rq = subprocess.run(["scontrol", "requeue", job], env=env, capture_output=True, text=True, timeout=30)
        assert rq.returncode == 0, rq.stderr
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    show = subprocess.run(["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True, timeout=30)
    assert "Restarts=1" in show.stdout or show.returncode != 0  # slurmctld may already have purged the job
    (run,) = _done_runs_list(sweep)
    assert {k.split("/")[0] for k in run["metrics"]["artifacts"]["hits"]} >= {
        "sft",
        "pairs",
    }  # reused after the requeue
    (policy,) = (cache / "v2" / "policy").glob("*/train_metrics.json")
    facts = json.loads(policy.read_text())
    assert facts["resumed"] and facts["history"][0]["step"] > 20 and facts["steps"] == 300, (
        facts.get("resumed"),
        facts.get("steps"),
        [h.get("step") for h in facts.get("history", [])][:3],
    )
    assert not list(policy.parent.glob("trainer/checkpoint-*"))  # cleaned up once complete


def _done_runs_list(sweep):
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run.json"))]
    assert [r["status"] for r in runs] == ["done"] * len(runs), [r.get("error") for r in runs]
    return runs
