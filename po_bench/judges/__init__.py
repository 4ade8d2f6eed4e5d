"""Judges beyond the embedded world's gold reward.

=============== ===============================================================================
``judge=``       what it measures
=============== ===============================================================================
alpaca_eval      AlpacaEval 2: win rate (and length-controlled win rate where alpaca_eval's GLM
                 data is available) against GPT-4-turbo reference outputs, with alpaca_eval's
                 ``weighted_alpaca_eval_gpt4_turbo`` annotator (prompt, order switch, logprob parser)
mt_bench         MT-Bench: FastChat single-answer grading (1-10) of two-turn answers, with GPT-4
                 reference answers for math / reasoning / coding
arena_hard       Arena-Hard-Auto v0.1: pairwise verdicts against a baseline's answers in both
                 orders, Bradley-Terry win rate with a bootstrap confidence interval
reward_model     a local sequence-classification reward model: mean rewards and win rate of the
                 policy over the SFT policy's responses
openllm_v2       Open LLM Leaderboard v2 (IFEval, BBH, MATH lvl 5, GPQA, MuSR, MMLU-Pro) run by
                 lm-evaluation-harness on the policy checkpoint, with the leaderboard's
                 normalized scores (random baseline 0, maximum 100)
=============== ===============================================================================

(and ``gold`` / ``none``, the pipeline's own: :mod:`.gold`).  Every judge follows the contract of
:mod:`.api`: a config dataclass with its own ``validate()``, a class registered with
``@register_judge("<name>")`` that says what it reads, and a :class:`api.JudgeResult`: ``metrics``
(JSON-ready, for the run record) and ``records`` (one per judged item); :mod:`.runner` runs every
judge of a run through it without naming any.  LLM judges talk to any OpenAI-compatible endpoint
through :class:`client.JudgeClient` (concurrency, retries with backoff, an on-disk response cache,
token and cost accounting, structured outputs).  Replies that cannot be parsed are counted in
``metrics["n_parse_failures"]`` and left out of the scores, never counted as ties.
"""
