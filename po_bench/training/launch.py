"""Training stages as their own process group (``launch=ddp|fsdp|zero2|zero3``).

The pipeline's process holds the store lock for the artifact and never initialises a distributed
backend itself: it writes the stage's spec to the artifact's work folder and starts

* ``accelerate launch --config_file conf/accelerate/<strategy>.yaml --num_processes G
  --num_machines N --machine_rank R --main_process_ip H --main_process_port P
  --mixed_precision M -m po_bench.stages <stage> <spec.json> --store <root> --into <work folder>``
  on GPUs (SimPO's and the alignment-handbook's way), or
* ``torchrun --nproc_per_node G --nnodes N --node_rank R --master_addr H --master_port P -m
  po_bench.stages ...`` on CPUs, where ``accelerate launch`` cannot start several processes without
  MPI (the Trainer then runs DDP / FSDP over gloo);

with ``launch.srun=true`` (a multi-node Slurm job) the command is wrapped in ``srun --ntasks-per-node
1`` and each node's rank comes from ``$SLURM_NODEID`` (HALOs' pattern).  Every rank builds the
artifact from the spec; only rank 0 writes it (consolidated weights that reload with
``from_pretrained``).  The parent publishes the folder once the group exits cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from po_bench.choices import Launcher, Precision, Strategy

log = logging.getLogger("po_bench")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on this machine (for a one-machine process group)."""

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def world_size(launch) -> int:
    return 1 if launch.strategy == Strategy.LOCAL else int(launch.num_processes) * int(launch.num_machines)


def global_batch(train, batch_key: str = "batch_size") -> tuple[int, str]:
    """A training stage's global batch, the recipe's and so the same under every launch, and where it comes
    from: ``train.global_batch_size`` for the preference stage when set, else what one process trains with,
    ``train.<batch_key>`` (batch_size, sft_batch_size) x ``train.grad_accum``."""
    if batch_key == "batch_size" and train.global_batch_size:
        return int(train.global_batch_size), f"train.global_batch_size={train.global_batch_size}"
    g = int(train[batch_key]) * int(train.grad_accum)
    return g, f"the global batch train.{batch_key} x train.grad_accum = {g}"


def split_batch(global_batch: int, world: int, cap: int) -> tuple[int, int]:
    """(per-device batch, accumulation) that make ``global_batch`` over ``world`` processes: the largest
    per-device batch up to ``cap`` (train.batch_size / sft_batch_size) that divides each process's share,
    the accumulation the rest.  ValueError when the world size does not divide the global batch."""
    if global_batch % world:
        raise ValueError(f"a global batch of {global_batch} does not divide over world size {world}")
    share = global_batch // world
    per = max(d for d in range(1, min(int(cap), share) + 1) if share % d == 0)
    return per, share // per


def rank() -> int:
    """This process's global rank under a launcher (0 outside one)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def use_accelerate(launch) -> bool:
    if launch.launcher != Launcher.AUTO:
        return launch.launcher == Launcher.ACCELERATE
    if Strategy(launch.strategy).deepspeed:  # DeepSpeed: GPUs only, through accelerate's launcher
        return True
    import torch  # lazy: numpy, torch (~1.0 s)

    return torch.cuda.is_available()


def command(launch, module_args: list[str], precision: str | None = None) -> list[str]:
    """The launcher command line that runs ``python -m po_bench.stages <module_args>`` on every rank
    (``precision``: the stage's train.precision, which sets accelerate's --mixed_precision)."""
    mixed = launch.mixed_precision or ("bf16" if precision == Precision.BF16_MIXED else "no")
    node_rank = "$SLURM_NODEID" if launch.srun else str(launch.machine_rank)
    if use_accelerate(launch):
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if launch.accelerate_config:
            cfg = Path(launch.accelerate_config)
            cmd += ["--config_file", str(cfg if cfg.is_absolute() else ROOT / cfg)]
        cmd += [
            "--num_processes",
            str(world_size(launch)),
            "--num_machines",
            str(launch.num_machines),
            "--machine_rank",
            node_rank,
            "--main_process_ip",
            str(launch.main_process_ip),
            "--main_process_port",
            str(launch.main_process_port or free_port()),
            "--mixed_precision",
            mixed,
            "-m",
            "po_bench.stages",
            *module_args,
        ]
    elif int(launch.num_machines) == 1 and not launch.main_process_port:
        # one machine, no port asked for: torchrun's standalone rendezvous takes a free port, so two
        # runs on one node (a parallel sweep, two Slurm jobs sharing a node) never collide
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(launch.num_processes),
            "-m",
            "po_bench.stages",
            *module_args,
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(launch.num_processes),
            "--nnodes",
            str(launch.num_machines),
            "--node_rank",
            node_rank,
            "--master_addr",
            str(launch.main_process_ip),
            "--master_port",
            str(launch.main_process_port),
            "-m",
            "po_bench.stages",
            *module_args,
        ]
    if launch.srun:
        cmd = [
            "srun",
            "--ntasks-per-node",
            "1",
            "--nodes",
            str(launch.num_machines),
            "bash",
            "-c",
            " ".join(shlex.quote(c) if not c.startswith("$") else c for c in cmd),
        ]
    return cmd


def run_stage(stage: str, spec: dict, out: Path, store_root: Path, opts: dict, launch) -> None:
    """Build one directory artifact into ``out`` with a process group; raise when any rank fails."""
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    spec_file.write_text(json.dumps(spec, default=str))
    args = [
        stage,
        str(spec_file),
        "--store",
        str(store_root),
        "--into",
        str(out),
        "--opts",
        json.dumps(opts),
        "--launch",
        json.dumps(launch_fields(launch)),
    ]
    cmd = command(launch, args, precision=(spec.get("train") or {}).get("precision"))
    log.info(
        "training %s with %d processes (%s): %s",
        stage,
        world_size(launch),
        launch.strategy,
        " ".join(shlex.quote(c) for c in cmd),
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        TOKENIZERS_PARALLELISM="false",
    )
    r = subprocess.run(cmd, env=env, cwd=str(ROOT))
    if r.returncode != 0:
        raise RuntimeError(
            f"{launch.strategy} training of {stage} failed (exit code {r.returncode} from "
            f"{Path(cmd[2] if cmd[0] == sys.executable else cmd[0]).name}); its ranks' output is above"
        )
    spec_file.unlink(missing_ok=True)


def dry_run(launch, store, specs: dict) -> None:
    """``launch.dry_run=true``: print each training stage's launch command line and exit 0."""
    for stage, spec in specs.items():
        if spec is None:
            continue
        out = store.path(stage, spec)
        args = [
            stage,
            str(out.parent / f".{out.name}.work" / "spec.json"),
            "--store",
            str(store.root),
            "--into",
            str(out.parent / f".{out.name}.work"),
            "--opts",
            "{}",
            "--launch",
            json.dumps(launch_fields(launch)),
        ]
        precision = (spec.get("train") or {}).get("precision")
        print(f"{stage}: " + " ".join(shlex.quote(c) for c in command(launch, args, precision)))
    raise SystemExit(0)


def launch_fields(launch) -> dict:
    from omegaconf import OmegaConf  # lazy: omegaconf (~0.1 s)

    return OmegaConf.to_container(launch, resolve=True) if OmegaConf.is_config(launch) else dict(launch)


def trainer_args(launch: dict | None) -> dict:
    """TrainingArguments fields of a strategy (FSDP settings, a DeepSpeed config), plus the process
    group's backend on CPUs."""
    if not launch or launch.get("strategy", "local") == "local":
        return {}
    import torch  # lazy: numpy, torch (~1.0 s)

    launch = launch_fields(launch)
    out = dict(launch.get("trainer_args") or {})
    if not torch.cuda.is_available():
        out.setdefault("ddp_backend", "gloo")
        if out.get("fsdp"):
            fsdp_on_cpu()
    return out


def fsdp_on_cpu() -> None:
    """Let accelerate shard on a CPU process group.  accelerate (1.15) turns the Trainer's FSDP plugin into
    its FSDP state only on accelerator devices: under torchrun over gloo it keeps its MULTI_CPU state, and
    the Trainer given FSDP arguments silently trains DDP, every rank holding the whole model.  FSDP2
    (``fully_shard``) runs over gloo, so here the state accelerate builds with an FSDP plugin on CPUs is
    FSDP, as it is on GPUs (once per process; the rank processes of launch=fsdp only)."""
    from accelerate import state  # lazy: accelerate, numpy, torch (~1.2 s)
    from accelerate.utils import DistributedType  # lazy: accelerate, numpy, torch (~1.2 s)

    init = state.AcceleratorState.__init__
    if getattr(init, "po_bench_fsdp_on_cpu", False):
        return

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__.po_bench_fsdp_on_cpu = True
    state.AcceleratorState.__init__ = __init__
