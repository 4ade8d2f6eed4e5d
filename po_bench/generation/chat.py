"""What a chat template implies for generation: the token(s) an assistant turn ends with."""

from __future__ import annotations

_MARK = "\u2063po-bench-end-of-turn-probe\u2063"


def stop_token_ids(tokenizer) -> list[int]:
    """Where generation stops: the tokenizer's EOS and the special token(s) its chat template ends an
    assistant turn with (Llama-3: ``<|eot_id|>`` besides EOS ``<|end_of_text|>``; ChatML:
    ``<|im_end|>``), read off the template by rendering one assistant turn, not hard-coded per model."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    ids += [int(x) for x in (eos if isinstance(eos, (list, tuple)) else [eos]) if x is not None]
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}], tokenize=False
            )
        except Exception:  # noqa: BLE001  (a template that refuses this conversation: EOS only)
            text = ""
        if _MARK in text:
            tail = text.split(_MARK, 1)[1]
            special = set(tokenizer.all_special_ids) | {
                i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
            }
            for t in tokenizer(tail, add_special_tokens=False)["input_ids"]:
                if t in special:  # the first special token after the turn's text ends the turn
                    ids.append(int(t))
                    break
    return list(dict.fromkeys(ids))
