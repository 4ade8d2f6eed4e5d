"""The one package that touches TRL.

TRL moves fast (CPO/ORPO/OnlineDPO live in ``trl.experimental`` in 1.16); every import of TRL and every use
of its trainers and config classes is in this package, so that a TRL upgrade is a change here only
(``tests/test_architecture.py`` checks it).  A loss config is read once as a
:class:`po_bench.training.methods.Method`; its kind picks the trainer.

- :mod:`.args`: po-bench's training fields and loss arguments -> TRL's config classes, field by field; a key
  with no TRL field is refused (nothing set in a config is dropped).
- :mod:`.fit`: running a Trainer: the logged history, checkpoints and resuming, the facts of the run (batch,
  parameters), saving under a process group.
- :mod:`.preference`: the preference stage (``train_preference``): the Method's kind -> its trainer family.
- one module per trainer family, each trainer a named class: :mod:`.dpo` (TRL's DPO losses and po-bench's
  pure pairwise and token-level functions, fused references, per-pair scores), :mod:`.cpo` (CPO / SimPO /
  AlphaPO / ORPO), :mod:`.unpaired` (KTO and po-bench's unpaired functions), :mod:`.listwise` (rated lists,
  TPO's steps), :mod:`.sft` (the SFT stage), :mod:`.reward` (MADPO's reward model);
  :mod:`.logps` holds the log-prob passes they share.
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
