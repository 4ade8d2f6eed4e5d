"""Training as its own process group (launch=ddp|fsdp|zero2|zero3): batch arithmetic, launch
command lines, rank-0-only writes, checkpoint cleanup, token-bounded scoring, and real
multi-process training on CPU (torchrun over gloo)."""

from __future__ import annotations

import json
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


# ---- batch arithmetic ---------------------------------------------------------------------------


def test_global_batch_sets_the_accumulation_from_the_world_size():
    cfg = _compose(["launch=zero3", "launch.dry_run=true", "train.global_batch_size=128", "train.batch_size=2"])
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
        ["launch=fsdp", "launch.num_processes=4"],
        ["launch=zero3", "launch.num_processes=4", "launch.num_machines=2", "launch.main_process_port=29500"],
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
        ["launch=zero3", "launch.dry_run=true", f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/r"],
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


# ---- token-bounded scoring -----------------------------------------------------------------------------


def test_scoring_batches_are_bounded_by_tokens_not_sequences(tokenizer):
    from po_bench.generation.logprobs import completion_logps, token_batches
    from po_bench.training.models import build_tiny_model

    assert token_batches([10, 10, 50, 10], max_sequences=64, max_tokens=99) == [[0, 1], [2], [3]]
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, seed=0)
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].numel()), with_kwargs=True)
    prompts = ["write about river cloud ."] * 40
    completions = [" the river and the cloud"] * 40
    full, _ = completion_logps(model, tokenizer, prompts, completions, batch_size=64)
    for n in (8, 40):  # more sequences: more batches, never a bigger one
        seen.clear()
        part, _ = completion_logps(model, tokenizer, prompts[:n], completions[:n], batch_size=64, max_tokens=48)
        assert max(seen) <= 48 and len(seen) >= n // 4
        assert torch.allclose(part, full[:n], atol=1e-5)


# ---- real process groups on CPU (gloo) -------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_train_a_world_run_and_a_sweep(tmp_path):
    args = [
        *SMALL,
        "threads=1",
        "launch=ddp",
        "launch.num_processes=2",  # no port: torchrun --standalone
        "train.global_batch_size=16",
        "train.batch_size=8",
        f"cache_dir={tmp_path}/cache",
    ]
    r = run_cli(["-m", "loss=dpo,ipo", *args, f"hydra.sweep.dir={tmp_path}/sweep"], ROOT, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = read_runs(tmp_path / "sweep")
    assert [x["status"] for x in runs] == ["done", "done"]
    for run in runs:
        t = run["metrics"]["train"]
        assert (t["world_size"], t["per_device_batch"], t["grad_accum"], t["global_batch"]) == (2, 8, 1, 16)
        assert (
            run["metrics"]["kl_to_ref"] != 0.0 and run["metrics"]["gold_reward"] is not None
        )  # trained: moved off SFT
    policies = list((tmp_path / "cache" / "v2" / "policy").glob("*/train_metrics.json"))
    assert len(policies) == 2  # one artifact per policy, written once (by rank 0), nothing left in work folders
    assert not list((tmp_path / "cache" / "v2" / "policy").glob(".*.work"))


@pytest.mark.slow
def test_fsdp_trains_on_cpu_and_saves_weights_that_reload(tmp_path):
    args = [
        *SMALL,
        "threads=1",
        "launch=fsdp",
        "launch.num_processes=2",
        f"launch.main_process_port={_port()}",
        "train.max_steps=2",
        f"cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
    ]
    r = run_cli(args, ROOT, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done" and rec["metrics"]["train"]["world_size"] == 2
    assert rec["metrics"]["kl_to_ref"] != 0.0  # the reloaded policy differs from the SFT model


@pytest.mark.slow
def test_two_machine_ranks_on_localhost(tmp_path):
    """``launch.num_machines=2``: two launchers (node ranks 0 and 1, as srun starts them on two
    nodes) form one process group and build one artifact."""

    cfg = _compose(
        [*SMALL, "launch=ddp", "launch.num_processes=1", "launch.num_machines=2", f"launch.main_process_port={_port()}"]
    )
    spec = plan(cfg).sft
    out = tmp_path / "sft"
    out.mkdir()
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
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
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
        validate(_compose(["launch=fsdp", "launch.num_machines=2"]))
