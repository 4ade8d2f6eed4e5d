"""Real preference data: loaders, format conversion, statistics and train/eval leakage checks.

One internal representation for the training stages: a list of dicts ``{"prompt", "chosen",
"rejected"}`` where either

* all three are strings (*plain*), or
* ``prompt`` is a list of ``{"role", "content"}`` messages and ``chosen`` / ``rejected`` are
  one-element lists ``[{"role": "assistant", "content": ...}]`` (TRL's *conversational*
  preference format).

Chat templates are applied later by the model's tokenizer, never here.  KTO-like losses get the
unpaired view ``{"prompt", "completion", "label"}`` (:func:`to_unpaired`); SFT stages get
``{"messages"}`` or ``{"prompt", "completion"}`` examples (:func:`to_sft`).

Source formats (``dataset.format``; ``dataset.columns`` maps internal names to source columns):

=================  ==========================================================================
``pairs``          prompt / chosen / rejected strings
``conversational`` message lists; chosen/rejected may be full conversations whose last message
                   is the assistant answer (UltraFeedback-binarized, SimPO's on-policy sets) or
                   just the answer; prompt may be a string or a message list or absent (then the
                   shared message prefix of chosen and rejected is the prompt).  For SFT data a
                   ``messages`` column (UltraChat).
``hh``             Anthropic HH-RLHF raw transcripts (``\n\nHuman: ... \n\nAssistant: ...``) in
                   chosen / rejected; the prompt is their shared prefix up to the last shared
                   ``\n\nAssistant:``.
``ranked``         prompt + k responses + k scores: best vs worst by score (ties skipped, counted);
                   with ``dataset.pair_strategy=list`` every response, as a rated list (:func:`to_lists`)
``unpaired``       prompt / completion / label (KTO-like losses only)
=================  ==========================================================================

Nothing is dropped silently: every converter returns a report with the rows read, the rows kept
and the rows skipped by reason (with example row indices); an empty result is an error naming the
source.
"""
