"""Training as its own process group (launch=ddp|fsdp|zero2|zero3): batch arithmetic, launch
command lines, rank-0-only writes, checkpoint cleanup, and real
multi-process training on CPU (torchrun over gloo)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from po_bench.config import ConfigError, check_machine, validate
from po_bench.specs import plan
from po_bench.training import launch as launcher

from .conftest import ROOT, SMALL, read_runs, run_cli
from .conftest import compose as _compose


def _port() -> int:
    with socket.socket() as s:  # a port for the process group's rendezvous (torchrun binds it itself)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_TAKEN = ("address already in use", "eaddrinuse", "errno: 98")  # torchrun's TCPStore when another bound it


# ---- batch arithmetic ---------------------------------------------------------------------------


def test_global_batch_sets_the_accumulation_from_the_world_size():
    cfg = _compose(
        [
            "launch=zero3",
            "diagnostics.probe=false",
            "launch.dry_run=true",
            "train.global_batch_size=128",
            "train.batch_size=2",
        ]
    )
    validate(cfg)
    train = plan(cfg).policy["train"]
    assert (train["grad_accum"], train["world_size"], train["strategy"]) == (16 // 2, 8, "zero3")
    assert train["batch_size"] * train["grad_accum"] * train["world_size"] == 128


def test_global_batch_that_does_not_divide_is_a_config_error():
    with pytest.raises(ConfigError, match=r"global_batch_size=100 does not divide over world size 3 .* multiple of 3"):
        validate(
            _compose(["launch=ddp", "launch.num_processes=3", "train.global_batch_size=100", "train.batch_size=16"])
        )
    # without train.global_batch_size the global batch is train.batch_size x train.grad_accum (32), kept too
    with pytest.raises(
        ConfigError, match=r"train.batch_size x train.grad_accum = 32 does not divide over world size 3"
    ):
        validate(_compose(["launch=ddp", "launch.num_processes=3"]))


@pytest.mark.parametrize(
    "launch",
    [
        ["launch=ddp", "launch.num_processes=2"],
        ["launch=fsdp", "diagnostics.probe=false", "launch.num_processes=4"],
        [
            "launch=zero3",
            "diagnostics.probe=false",
            "launch.num_processes=4",
            "launch.num_machines=2",
            "launch.main_process_port=29500",
        ],
    ],
)
def test_the_launcher_keeps_the_recipes_global_batch(launch):
    """Changing the launcher does not change the experiment: SFT and preference stages keep the global batch
    of launch=local (per device x accumulation x world size), the per-device batch at most train.batch_size."""
    for extra in ([], ["train.grad_accum=2"], ["train.global_batch_size=64", "train.batch_size=4"]):
        local, other = plan(_compose(extra)), plan(_compose([*launch, *extra]))
        validate(_compose([*launch, *extra]))
        for stage, key in (("policy", "batch_size"), ("sft", "sft_batch_size")):
            a, b = getattr(local, stage)["train"], getattr(other, stage)["train"]
            assert a[key] * a["grad_accum"] * a["world_size"] == b[key] * b["grad_accum"] * b["world_size"], extra
            assert b[key] <= a[key] and b["world_size"] > 1
    ddp = plan(_compose(["launch=ddp", "launch.num_processes=2"]))  # the default world run: 32 = 16 x 2
    assert [ddp.policy["train"][k] for k in ("batch_size", "grad_accum", "world_size")] == [16, 1, 2]


def test_local_launch_with_several_processes_is_refused():
    with pytest.raises(ConfigError, match="launch=local runs in one process"):
        validate(_compose(["launch.num_processes=2"]))


def test_deepspeed_without_gpus_says_how_to_dry_run():
    if torch.cuda.is_available():
        pytest.skip("this machine has GPUs")
    cfg = _compose(["launch=zero2"])
    validate(cfg)  # a valid config (paper presets are composed and validated on CPU machines too)
    with pytest.raises(ConfigError, match="launch.dry_run=true prints the launch command"):
        check_machine(cfg)


# ---- launch command lines -------------------------------------------------------------------------


def test_cpu_ddp_uses_torchrun_and_gpu_strategies_use_accelerate():
    cpu = launcher.command(
        OmegaConf.create({**_compose(["launch=ddp"]).launch, "num_processes": 2, "launcher": "torchrun"}),
        ["sft", "s.json"],
    )
    assert cpu[1:3] == ["-m", "torch.distributed.run"] and cpu[cpu.index("--nproc_per_node") + 1] == "2"
    assert cpu[-4:] == ["-m", "po_bench.stages", "sft", "s.json"]
    z3 = launcher.command(
        _compose(
            ["launch=zero3", "launch.num_machines=2", "launch.machine_rank=1", "launch.main_process_port=29500"]
        ).launch,
        ["policy"],
        precision="bf16-mixed",
    )
    assert z3[1:3] == ["-m", "accelerate.commands.launch"]
    assert z3[z3.index("--config_file") + 1] == str(ROOT / "conf" / "accelerate" / "deepspeed_zero3.yaml")
    assert (
        z3[z3.index("--num_processes") + 1],
        z3[z3.index("--num_machines") + 1],
        z3[z3.index("--machine_rank") + 1],
        z3[z3.index("--mixed_precision") + 1],
    ) == ("16", "2", "1", "bf16")


def test_multi_node_under_slurm_starts_one_launcher_per_node():
    cmd = launcher.command(
        _compose(
            [
                "launch=fsdp",
                "launch.num_machines=4",
                "launch.srun=true",
                "launch.main_process_port=29500",
                "launch.launcher=accelerate",
            ]
        ).launch,
        ["policy"],
    )
    assert cmd[:5] == ["srun", "--ntasks-per-node", "1", "--nodes", "4"]
    assert "--machine_rank $SLURM_NODEID" in cmd[-1]  # expanded by each node's shell


def test_dry_run_prints_the_launch_commands(tmp_path):
    r = run_cli(
        [
            "launch=zero3",
            "diagnostics.probe=false",
            "launch.dry_run=true",
            f"cache_dir={tmp_path}/c",
            f"hydra.run.dir={tmp_path}/r",
        ],
        ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("sft:", "policy:"))]
    assert [ln.split(":")[0] for ln in lines] == ["sft", "policy"]
    assert all("accelerate.commands.launch" in ln and "deepspeed_zero3.yaml" in ln for ln in lines)
    assert not (tmp_path / "c" / "v2" / "sft").exists() or not any((tmp_path / "c" / "v2" / "sft").iterdir())


# ---- rank-0-only writes, checkpoint cleanup ----------------------------------------------------------


def test_only_rank_zero_writes_a_training_artifact(tmp_path, monkeypatch):
    from po_bench import stages
    from po_bench.store import Store

    spec = plan(_compose(["stages.sft=false"])).sft  # the untrained tiny model: no training needed
    for rank, out in ((1, tmp_path / "r1"), (0, tmp_path / "r0")):
        out.mkdir()
        monkeypatch.setenv("RANK", str(rank))
        stages.build_sft(spec, out, Store(tmp_path / "store"), {}, {"strategy": "ddp"})
    assert sorted(p.name for p in (tmp_path / "r1").iterdir()) == []
    assert {"config.json", "model.safetensors", "train_metrics.json"} <= {p.name for p in (tmp_path / "r0").iterdir()}


def test_checkpoints_are_deleted_once_an_artifact_is_complete(tmp_path):
    from po_bench.stages import cleanup_checkpoints

    for d in ("checkpoint-2", "checkpoint-4"):
        (tmp_path / "trainer" / d).mkdir(parents=True)
        (tmp_path / "trainer" / d / "optimizer.pt").write_bytes(b"x" * 10)
    cleanup_checkpoints(tmp_path / "trainer", keep=True)
    assert len(list((tmp_path / "trainer").iterdir())) == 2
    cleanup_checkpoints(tmp_path / "trainer", keep=False)
    assert list((tmp_path / "trainer").iterdir()) == []


# ---- real process groups on CPU (gloo) -------------------------------------------------------------


# The world run with nothing about the batch set (SMALL's train.batch_size=16), SFT off: the untrained tiny model
# is the start, so the on-policy pairs and the reference log-probs do not depend on the launch (SFT under a
# process group: the fsdp and two-machine tests).
LOCAL = [*SMALL, "threads=1", "stages.sft=false"]
DDP = [*LOCAL, "launch=ddp", "launch.num_processes=2"]  # no port: torchrun --standalone


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory):
    """A 2-loss sweep (dpo, ipo) trained by two processes; its folder and store are shared by the tests below."""
    d = tmp_path_factory.mktemp("ddp")
    r = run_cli(["-m", "loss=dpo,ipo", *DDP, f"cache_dir={d}/cache", f"hydra.sweep.dir={d}/sweep"], ROOT, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


@pytest.mark.slow
def test_ddp_two_processes_train_a_world_run_and_a_sweep(ddp_sweep):
    runs = read_runs(ddp_sweep / "sweep")
    assert [x["status"] for x in runs] == ["done", "done"]
    for run in runs:
        t = run["metrics"]["train"]
        # the default global batch (16) kept under the launch: 8 per device x 2 processes
        assert (t["world_size"], t["per_device_batch"], t["grad_accum"], t["global_batch"]) == (2, 8, 1, 16)
        # DDP: each rank holds the whole model
        assert t["params"]["sharded"] is False and t["params"]["per_rank"] == [t["params"]["full"]] * 2
        assert run["metrics"]["kl_to_ref"] != 0.0 and run["metrics"]["gold_reward"] is not None  # moved off the start
    policies = list((ddp_sweep / "cache" / "v2" / "policy").glob("*/train_metrics.json"))
    assert len(policies) == 2  # one artifact per policy, written once (by rank 0), nothing left in work folders
    assert not list((ddp_sweep / "cache" / "v2" / "policy").glob(".*.work"))


@pytest.mark.slow
def test_the_launcher_does_not_change_the_global_batch_or_the_steps(ddp_sweep, tmp_path):
    """The same run under launch=local trains on the same pairs with the same global batch and as many optimizer
    steps as under launch=ddp with 2 processes (which once kept the per-device batch: global 32, half the steps)."""
    r = run_cli(
        [
            *LOCAL,
            "loss=dpo",
            "stages.generate=false",
            f"cache_dir={ddp_sweep}/cache",
            f"hydra.run.dir={tmp_path}/local",
        ],
        ROOT,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    local = json.loads((tmp_path / "local" / "run.json").read_text())
    ddp = next(x for x in read_runs(ddp_sweep / "sweep") if x["config"]["loss"]["name"] == "dpo")
    n_pairs = ddp["metrics"]["data"]["n_pairs"]
    assert local["metrics"]["data"]["n_pairs"] == n_pairs
    lt, dt = local["metrics"]["train"], ddp["metrics"]["train"]
    assert (lt["world_size"], lt["per_device_batch"], dt["world_size"], dt["per_device_batch"]) == (1, 16, 2, 8)
    assert (lt["global_batch"], lt["steps"]) == (dt["global_batch"], dt["steps"]) == (16, math.ceil(n_pairs / 16))
    # the probe (diagnostics.probe, on by default) under ddp: every rank measured, rank 0's values are stored; the
    # same probe set and schedule as launch=local, and the same start (the same starting checkpoint)
    lp, dp = local["metrics"]["diagnostics"]["probe"], ddp["metrics"]["diagnostics"]["probe"]
    assert [h["step"] for h in dp["history"]] == [h["step"] for h in lp["history"]]
    assert dp["history"][0]["step"] == 0 and dp["history"][-1]["step"] == dt["steps"]
    assert (dp["n_pairs"], dp["n_unseen"]) == (lp["n_pairs"], lp["n_unseen"]) and dp["n_pairs"] == 32
    for k in ("logp_chosen", "logp_rejected", "logp_unseen"):
        assert dp["history"][0][k] == pytest.approx(lp["history"][0][k], rel=1e-5), k
    assert dp["delta_chosen"] != 0.0  # it trained, and the probe saw it


@pytest.mark.slow
def test_cache_gc_keeps_the_reference_log_probs_a_process_group_built(ddp_sweep, tmp_path):
    """The reference log-probs of a launch=ddp run are computed and stored inside the process group: the runs
    record them (run.json metrics.artifacts, what `po-bench cache gc --keep` keeps), gc keeps them, and a rerun
    that trains another policy on the same pairs reuses them."""
    cache = ddp_sweep / "cache"
    arts = [x["metrics"]["artifacts"] for x in read_runs(ddp_sweep / "sweep")]
    refs = {k for a in arts for k in a["built"] + a["hits"] if k.startswith("ref_logps/")}
    assert len(refs) == 1, arts  # recorded; shared by dpo and ipo (the loss type is not in the reference pass)
    (ref,) = refs
    r = run_cli(["cache", "--root", str(cache), "gc", "--keep", str(ddp_sweep / "sweep")], ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (cache / "v2" / ref / "manifest.json").is_file(), r.stdout
    rerun = [*DDP, "loss=dpo", "loss.beta=0.2", "train.max_steps=1", "stages.generate=false"]
    r = run_cli([*rerun, f"cache_dir={cache}", f"hydra.run.dir={tmp_path}/rerun"], ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    art = json.loads((tmp_path / "rerun" / "run.json").read_text())["metrics"]["artifacts"]
    assert ref in art["hits"] and ref not in art["built"], art
    assert [k.split("/")[0] for k in art["built"]] == ["policy"]


@pytest.mark.slow
def test_fsdp_shards_the_parameters_on_cpu_and_saves_the_trained_weights(tmp_path):
    args = [
        *SMALL,
        "threads=1",
        "launch=fsdp",
        "diagnostics.probe=false",  # (the probe cannot score sharded parameters)
        "launch.num_processes=2",  # one machine: the rendezvous takes a free port itself (no bind-then-release)
        "train.max_steps=2",
        f"cache_dir={tmp_path}/cache",
    ]
    r = run_cli([*args, f"hydra.run.dir={tmp_path}/run"], ROOT, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    t = rec["metrics"]["train"]
    assert rec["status"] == "done" and t["world_size"] == 2
    # recorded inside the trainer on each rank: FSDP-sharded, each rank's shard smaller than the model (not DDP)
    p = t["params"]
    assert p["sharded"] is True and len(p["per_rank"]) == 2, p
    assert all(0 < n < p["full"] for n in p["per_rank"]) and sum(p["per_rank"]) == p["full"], p
    # the consolidated weights rank 0 saved are the trained ones: the norm the ranks computed from their shards,
    # and the run's own KL to the reference recomputed from them, the SFT model and the run's generations
    from po_bench import stages
    from po_bench.judges import implicit
    from po_bench.store import Store

    pl, store = plan(_compose(args)), Store(tmp_path / "cache")
    policy = stages.load_model(str(store.path("policy", pl.policy)), pl.policy["model"])
    assert sum(float(x.detach().double().pow(2).sum()) for x in policy.parameters()) ** 0.5 == pytest.approx(
        p["norm"], rel=1e-9
    )
    sft_dir = str(store.path("sft", pl.sft))
    kl = implicit.kl_and_length(
        policy,
        stages.load_model(sft_dir, pl.sft["model"]),
        stages.load_tokenizer(sft_dir, pl.sft["model"]),
        stages.resolve_prompts(store, pl.eval_prompts),
        store.load_json("samples", pl.samples["generations"]),
    )["kl_to_ref"]
    assert kl == pytest.approx(rec["metrics"]["kl_to_ref"], abs=1e-5) and kl != 0.0


def _two_machine_launch(tmp_path):
    cfg = _compose(
        [*SMALL, "launch=ddp", "launch.num_processes=1", "launch.num_machines=2", f"launch.main_process_port={_port()}"]
    )
    spec = plan(cfg).sft
    out = tmp_path / "sft"
    out.mkdir(parents=True)
    (out / "spec.json").write_text(json.dumps(spec))
    la = OmegaConf.to_container(cfg.launch)
    procs = []
    for node in (0, 1):
        node_launch = OmegaConf.create({**la, "machine_rank": node, "launcher": "torchrun"})
        cmd = launcher.command(
            node_launch,
            [
                "sft",
                str(out / "spec.json"),
                "--store",
                str(tmp_path / "store"),
                "--into",
                str(out),
                "--launch",
                json.dumps(la),
            ],
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        procs.append(
            subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outs = [p.communicate(timeout=1200)[0] for p in procs]
    return outs, [p.returncode for p in procs], out


@pytest.mark.slow
def test_two_machine_ranks_on_localhost(tmp_path):
    """``launch.num_machines=2``: two launchers (node ranks 0 and 1, as srun starts them on two
    nodes) form one process group and build one artifact.  The rendezvous port is free when chosen, not
    necessarily when torchrun binds it: a launch that lost it is retried on another port (twice at most)."""
    for attempt in range(3):
        outs, codes, out = _two_machine_launch(tmp_path / f"try{attempt}")
        if codes == [0, 0] or not any(m in "".join(outs).lower() for m in PORT_TAKEN):
            break
    assert codes == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    facts = json.loads((out / "train_metrics.json").read_text())
    assert facts["world_size"] == 2
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out))  # consolidated weights that reload


def test_one_machine_without_a_port_takes_a_free_one_and_several_machines_need_one():
    cmd = launcher.command(OmegaConf.create({**_compose(["launch=ddp"]).launch, "launcher": "torchrun"}), ["sft"])
    assert "--standalone" in cmd and "--master_port" not in cmd  # torchrun's own free-port rendezvous
    acc = launcher.command(OmegaConf.create({**_compose(["launch=ddp"]).launch, "launcher": "accelerate"}), ["sft"])
    assert int(acc[acc.index("--main_process_port") + 1]) > 0
    with pytest.raises(ConfigError, match="set launch.main_process_port"):
        validate(_compose(["launch=fsdp", "diagnostics.probe=false", "launch.num_machines=2"]))
