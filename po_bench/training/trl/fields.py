"""The field names of TRL's config classes, as a table written from the installed TRL.

Config validation checks a loss's ``args`` against its TRL trainer's config class before any compute
(:func:`po_bench.training.trl.args.validate_loss_args`); importing those classes costs transformers, peft
and torch (~5 s), more than the rest of a config error or a fully cached rerun.  So validation reads this
table while the installed versions are the ones it was written from (:data:`VERSIONS`), and the classes
themselves otherwise.  After a TRL or transformers upgrade, write it again (``tests/test_trl_fields.py``
fails until then)::

    python -m po_bench.training.trl.fields
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# the TRL trainer family (Method.trl_trainer) -> its config class
CLASSES = {"dpo": "DPOConfig", "cpo": "CPOConfig", "kto": "KTOConfig", "orpo": "ORPOConfig", "sft": "SFTConfig"}

# --- written by `python -m po_bench.training.trl.fields`: do not edit below (names separated by white space) ---
VERSIONS = {"trl": "1.16.0", "transformers": "5.19.0"}
COMMON = """
accelerator_config adam_beta1 adam_beta2 adam_epsilon auto_find_batch_size average_tokens_across_devices
batch_eval_metrics bf16 bf16_full_eval data_seed dataloader_drop_last dataloader_in_order
dataloader_multiprocessing_context dataloader_num_workers dataloader_persistent_workers dataloader_pin_memory
dataloader_prefetch_factor dataset_num_proc ddp_backend ddp_broadcast_buffers ddp_bucket_cap_mb
ddp_find_unused_parameters ddp_static_graph ddp_timeout debug deepspeed disable_tqdm do_eval do_predict
do_train enable_jit_checkpoint eval_accumulation_steps eval_delay eval_do_concat_batches eval_on_start
eval_steps eval_strategy eval_use_gather_object fp16 fp16_full_eval fsdp fsdp_config full_determinism
gradient_accumulation_steps gradient_checkpointing gradient_checkpointing_kwargs greater_is_better
hub_always_push hub_model_id hub_private_repo hub_revision hub_strategy hub_token ignore_data_skip
include_for_metrics include_num_input_tokens_seen label_names label_smoothing_factor learning_rate
length_column_name liger_kernel_config load_best_model_at_end local_rank log_level log_level_replica
log_on_each_node logging_first_step logging_nan_inf_filter logging_steps logging_strategy lr_scheduler_kwargs
lr_scheduler_type max_grad_norm max_length max_steps metric_for_best_model model_init_kwargs
neftune_noise_alpha num_train_epochs optim optim_args optim_target_modules output_dir parallelism_config
per_device_eval_batch_size per_device_train_batch_size prediction_loss_only project push_to_hub
remove_unused_columns report_to restore_callback_states_from_checkpoint resume_from_checkpoint run_name
save_on_each_node save_only_model save_steps save_strategy save_total_limit seed skip_memory_metrics tf32
torch_compile torch_compile_backend torch_compile_mode torch_empty_cache_steps trackio_bucket_id
trackio_space_id trackio_static_space_id train_sampling_strategy trust_remote_code use_cache use_cpu
use_liger_kernel warmup_steps weight_decay
"""
OWN = {
    "dpo": """
    activation_offloading beta disable_dropout discopop_tau f_alpha_divergence_coef f_divergence_type
    label_smoothing ld_alpha loss_type loss_weights pad_to_multiple_of pad_token padding_free
    precompute_ref_batch_size precompute_ref_log_probs ref_model_mixup_alpha ref_model_sync_steps
    router_aux_loss_coef sync_ref_model truncation_mode use_weighting
""",
    "cpo": """
    alpha beta cpo_alpha disable_dropout generate_during_eval is_encoder_decoder label_smoothing loss_type
    max_completion_length simpo_gamma
""",
    "kto": """
    activation_offloading beta desirable_weight disable_dropout loss_type pad_to_multiple_of
    precompute_ref_batch_size precompute_ref_log_probs ref_model_mixup_alpha ref_model_sync_steps
    router_aux_loss_coef sync_ref_model undesirable_weight
""",
    "orpo": """
    beta disable_dropout generate_during_eval is_encoder_decoder max_completion_length padding_value
""",
    "sft": """
    activation_offloading assistant_only_loss chat_template_path completion_only_loss dataset_kwargs
    dataset_text_field eos_token eval_packing loss_type packing packing_strategy pad_to_multiple_of pad_token
    padding_free router_aux_loss_coef shuffle_dataset truncation_mode
""",
}
# --- end of the written table --------------------------------------------------------------------------------


def config_class(trl_trainer: str):
    """TRL's config class of a trainer family (``Method.trl_trainer``): dpo, cpo, orpo, kto, sft."""
    if trl_trainer == "dpo":
        from trl import DPOConfig  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~5.2 s)

        return DPOConfig
    if trl_trainer == "cpo":
        from trl.experimental.cpo import CPOConfig  # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~6.2 s)

        return CPOConfig
    if trl_trainer == "kto":
        from trl import KTOConfig  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~5.6 s)

        return KTOConfig
    if trl_trainer == "orpo":
        from trl.experimental.orpo import ORPOConfig  # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.9 s)

        return ORPOConfig
    if trl_trainer == "sft":
        from trl import SFTConfig  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~5.3 s)

        return SFTConfig
    raise ValueError(f"unknown TRL trainer {trl_trainer!r}")


@lru_cache(maxsize=1)
def installed_versions() -> dict[str, str]:
    out = {}
    for pkg in ("trl", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def table_fields(trl_trainer: str) -> frozenset[str] | None:
    """The fields of the trainer family's config class from the table, or None when the table does not
    describe the installed TRL and transformers (or the family)."""
    if trl_trainer not in OWN or installed_versions() != VERSIONS:
        return None
    return frozenset(COMMON.split()) | frozenset(OWN[trl_trainer].split())


def write(path: Path = Path(__file__)) -> None:
    """Write the table of the installed TRL into this module (between its markers)."""
    fields = {t: [f.name for f in dataclasses.fields(config_class(t))] for t in CLASSES}
    common = sorted(set.intersection(*(set(v) for v in fields.values())))
    own = {t: sorted(set(v) - set(common)) for t, v in fields.items()}
    start, end = "# --- written by", "# --- end of the written table"
    text = path.read_text()
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    wrap = lambda names, indent: textwrap.fill(" ".join(names), 110, initial_indent=indent, subsequent_indent=indent)
    body = [
        f"VERSIONS = {installed_versions()!r}",
        f'COMMON = """\n{wrap(common, "")}\n"""',
        "OWN = {",
        *[f'    {t!r}: """\n{wrap(names, "    ")}\n""",' for t, names in own.items()],
        "}",
    ]
    marker = rest.split("\n", 1)[0]
    path.write_text(head + start + marker + "\n" + "\n".join(body) + "\n" + end + tail)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False)  # the house format


if __name__ == "__main__":
    write()
    v = installed_versions()
    print(f"wrote {Path(__file__)}: the config fields of TRL {v['trl']} (transformers {v['transformers']})")
