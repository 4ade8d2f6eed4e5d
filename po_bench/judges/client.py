"""An OpenAI-compatible chat client for LLM judges.

* **endpoint**: any server speaking the OpenAI chat-completions API (OpenAI itself, a vLLM server
  ``python -m vllm.entrypoints.openai.api_server``, ...), named by ``base_url`` and ``model``; the
  API key is read from the file named by ``api_key_file`` when set, else from the environment
  variable named by ``api_key_env``; it is never stored in a config, a cache entry or a log.
* **concurrency**: :meth:`JudgeClient.chat_many` runs up to ``max_concurrency`` requests at once.
* **retries**: timeouts, connection errors, HTTP 429 and 5xx are retried up to ``max_retries``
  times with exponential backoff (``backoff_base * 2**attempt``, capped at ``backoff_max``, with
  jitter; a ``Retry-After`` header is honoured up to the cap); other errors are not retried.
* **cache**: every successful response is stored on disk, keyed by the judge's identity
  (``name``, ``version``, ``model``), the prompt messages and the sampling parameters, so a rerun
  pays for nothing twice.  Where the endpoint lives (``base_url``), concurrency, timeouts and
  retries are not part of the key.
* **accounting**: :attr:`JudgeClient.stats` counts requests sent, retries, cache hits, failures,
  prompt/completion tokens (from ``usage``) and cost (``price_input_per_mtok`` /
  ``price_output_per_mtok``, USD per million tokens; 0 for a local judge).
* **budget**: ``max_requests`` (HTTP requests sent, retries included) and ``max_cost_usd`` (the
  cost above), 0 = unlimited, cap what one client (one run) sends; cache hits are free and not
  counted.  A request is sent only while the budget allows it: under ``max_cost_usd`` the next
  request must fit, at the dearest response seen so far, beside those in flight (the first one
  goes alone, to learn the price).  Once the budget is spent nothing more is sent: the requests
  not made come back as results with ``budget_stopped`` set, counted in ``stats.budget_skipped``
  with ``stats.budget_exhausted``; every answer already received is cached, so a rerun with a
  higher budget pays only for the rest.  An endpoint that reports no token usage cannot be held to
  ``max_cost_usd``: the client then stops after the first such response.
* **structured outputs**: ``structured_outputs={"choice": [...]}`` or ``{"regex": ...}`` is sent as
  ``extra_body={"structured_outputs": ...}`` (vLLM's request field; its older ``guided_choice``
  is silently ignored by current vLLM).

Judges parse the text themselves; a reply they cannot parse is counted as a parse failure in
their result and never turned into a tie.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from po_bench.judges.api import BaseJudgeConfig, check
from po_bench.store import atomic_write_text

log = logging.getLogger("po_bench.judges")

# Request fields that determine a response (and so the cache key), besides the judge identity.
_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "max_tokens",
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "stop",
    "presence_penalty",
    "frequency_penalty",
)


@dataclass
class JudgeCacheConfig:
    enabled: bool = True
    dir: str | None = None


@dataclass
class LLMJudgeConfig(BaseJudgeConfig):
    """The fields of a judge that asks an OpenAI-compatible endpoint (:class:`JudgeClient` reads them) for
    judgments of the policy's answers to its questions."""

    base_url: str | None = None
    model: str | None = None
    max_concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    temperature: float | None = None
    max_tokens: int | None = None
    structured_outputs: Any = None
    cache: JudgeCacheConfig = field(default_factory=JudgeCacheConfig)
    answer_max_new_tokens: int | None = None

    def check_data(self, world_data: bool) -> None:
        self.refuse_world(world_data)

    def check_endpoint(self) -> None:
        check(
            bool(self.base_url),
            f"judge={self.name} needs an endpoint: set judge.base_url (OpenAI or a local vLLM server) and judge.model",
        )
        check(bool(self.model), f"judge={self.name}: set judge.model (the judge model's name at the endpoint)")


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a dict, an OmegaConf node, a dataclass or any object; ``default`` when
    missing or None."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        val = cfg.get(key, default)
    else:
        try:
            val = getattr(cfg, key)
        except AttributeError:  # OmegaConf struct nodes raise a subclass of AttributeError
            val = default
    return default if val is None else val


def to_plain(obj: Any) -> Any:
    """OmegaConf nodes / dataclasses -> plain Python containers (for hashing and JSON)."""
    try:
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def load_judge_config(name_or_path: str | os.PathLike, **overrides) -> Any:
    """A judge config from ``conf/judge/<name>.yaml`` (or a yaml path), with dotted-key overrides
    (``load_judge_config("mt_bench", **{"cache.dir": "/tmp/c"})``); an OmegaConf node."""
    from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

    p = Path(name_or_path)
    if not p.suffix:
        p = Path(__file__).resolve().parents[2] / "conf" / "judge" / f"{name_or_path}.yaml"
    cfg = OmegaConf.load(p)
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v, force_add=True)
    return cfg


class JudgeRequestError(RuntimeError):
    """A request that failed for good (non-retryable error, or retries exhausted)."""


class _BudgetStop(Exception):
    """The client's budget is spent: the request is not sent."""


BUDGET_ERROR = "budget exhausted"  # in the error text of a result that the budget stopped


def is_budget_stop(error: str | None) -> bool:
    """Whether a result's ``error`` text is a budget stop (not a failed request)."""
    return bool(error) and BUDGET_ERROR in error


@dataclass
class FailureTally:
    """A judge's unmade judgments, by kind: requests that failed, and requests the budget stopped
    (counted, never dropped silently).  One per ``evaluate`` call."""

    n_asked: int
    n_request_failures: int = 0
    n_not_judged_budget: int = 0

    def add(self, error: str | None) -> None:
        if is_budget_stop(error):
            self.n_not_judged_budget += 1
        else:
            self.n_request_failures += 1

    def metrics(self, client: JudgeClient, name: str, what: str = "judgments") -> dict:
        """The counts for the judge's metrics, plus whether the budget ran out (logged when it did)."""
        if self.n_not_judged_budget:
            log.warning(
                "%s: %d of %d %s not made: the judge budget is spent",
                name,
                self.n_not_judged_budget,
                self.n_asked,
                what,
            )
        return {
            "n_request_failures": self.n_request_failures,
            "budget_exhausted": bool(client.stats.budget_exhausted or self.n_not_judged_budget),
            "n_asked": self.n_asked,
            "n_not_judged_budget": self.n_not_judged_budget,
        }


def stats_delta(before: dict, after: dict) -> dict:
    """What a judge's calls added to the client's numeric stats (requests, tokens, cost, ...)."""
    out = {}
    for k, v in after.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = round(v - before.get(k, 0), 6) if isinstance(v, float) else v - before.get(k, 0)
    return out


@dataclass
class ChatResult:
    text: str | None = None
    finish_reason: str | None = None
    logprobs: list[dict] | None = None  # per generated token: {token, logprob, top_logprobs: [{token, logprob}]}
    usage: dict = field(default_factory=dict)
    cached: bool = False
    error: str | None = None
    key: str = ""
    budget_stopped: bool = False  # not sent: the client's budget (max_requests / max_cost_usd) was spent

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent (retries included); 0 on a fully cached rerun
    responses: int = 0  # successful responses received
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0  # requests that failed for good
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: dict = field(default_factory=dict)  # error kind -> count (retried ones included)
    budget_exhausted: bool = False  # max_requests / max_cost_usd reached: nothing more was sent
    budget_skipped: int = 0  # requests not made because the budget was spent (not failures)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cost_usd"] = round(d["cost_usd"], 6)
        return d


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


class ResponseCache:
    """One JSON file per response under ``root/<judge>-<version>/<kk>/<key>.json`` (atomic writes)."""

    def __init__(self, root: str | os.PathLike, namespace: str):
        self.dir = Path(root).expanduser() / namespace

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):  # a damaged entry is a miss, rewritten on success
            log.warning("unreadable judge cache entry %s: ignored", p)
            return None

    def put(self, key: str, record: dict) -> None:

        atomic_write_text(self._path(key), json.dumps(record, ensure_ascii=False))


def default_cache_dir() -> Path:
    return Path(os.environ.get("PO_BENCH_CACHE") or ".po_bench_cache") / "judge"


class JudgeClient:
    """Chat completions against one judge endpoint, with retries, a disk cache and accounting.

    ``cfg`` is a judge config (see ``conf/judge/*.yaml``); keys read here: ``name``, ``version``,
    ``base_url``, ``model``, ``api_key_env``, ``max_concurrency``, ``timeout``, ``max_retries``,
    ``backoff_base``, ``backoff_max``, ``price_input_per_mtok``, ``price_output_per_mtok``,
    ``api_key_file``, ``max_requests``, ``max_cost_usd``, ``cache.enabled``, ``cache.dir`` (else ``cache_root``, else ``$PO_BENCH_CACHE/judge`` or
    ``.po_bench_cache/judge``).
    """

    def __init__(self, cfg: Any, cache_root: str | os.PathLike | None = None, sleep=time.sleep):
        self.cfg = cfg
        self.name = str(cfg_get(cfg, "name", "judge"))
        self.version = str(cfg_get(cfg, "version", "0"))
        self.model = cfg_get(cfg, "model")
        if not self.model:
            raise ValueError(f"judge {self.name}: `model` is not set")
        self.base_url = cfg_get(cfg, "base_url", "https://api.openai.com/v1")
        self.max_concurrency = max(1, int(cfg_get(cfg, "max_concurrency", 4)))
        self.timeout = float(cfg_get(cfg, "timeout", 120.0))
        self.max_retries = int(cfg_get(cfg, "max_retries", 5))
        self.backoff_base = float(cfg_get(cfg, "backoff_base", 1.0))
        self.backoff_max = float(cfg_get(cfg, "backoff_max", 60.0))
        self.price_in = float(cfg_get(cfg, "price_input_per_mtok", 0.0))
        self.price_out = float(cfg_get(cfg, "price_output_per_mtok", 0.0))
        self.max_requests = int(cfg_get(cfg, "max_requests", 0))
        self.max_cost_usd = float(cfg_get(cfg, "max_cost_usd", 0.0))
        if self.max_requests < 0 or self.max_cost_usd < 0:
            raise ValueError(f"judge {self.name}: max_requests and max_cost_usd must be >= 0 (0 = unlimited)")
        cache_cfg = cfg_get(cfg, "cache", {})
        self.cache = None
        if cfg_get(cache_cfg, "enabled", True):
            root = cfg_get(cache_cfg, "dir") or cache_root or default_cache_dir()
            self.cache = ResponseCache(root, f"{self.name}-{self.version}")
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._budget = threading.Condition(self._lock)  # slots for requests under the budget
        self._in_flight = 0
        self._dearest = None  # the highest cost of one response so far (the estimate for the next)
        self._no_usage = False  # a response came without token usage: its cost is unknown
        self._sleep = sleep
        self._client = None

    # -- plumbing ---------------------------------------------------------------------------
    def _api(self):
        if self._client is None:
            from openai import OpenAI  # lazy: openai (~0.5 s)

            key_file = cfg_get(self.cfg, "api_key_file")
            env = cfg_get(self.cfg, "api_key_env")
            if key_file:  # a file wins: the key never passes through the config or the environment
                try:
                    key = Path(str(key_file)).expanduser().read_text(encoding="utf-8").strip()
                except OSError as e:
                    raise JudgeRequestError(
                        f"judge {self.name}: api_key_file {key_file}: cannot read it ({type(e).__name__})"
                    ) from None
                if not key:
                    raise JudgeRequestError(f"judge {self.name}: api_key_file {key_file} is empty")
            else:
                key = os.environ.get(env) if env else None
                if env and not key:
                    raise JudgeRequestError(f"judge {self.name}: environment variable {env} (the API key) is not set")
            # retries are ours (counted, logged); the SDK's own are switched off
            self._client = OpenAI(base_url=self.base_url, api_key=key or "EMPTY", timeout=self.timeout, max_retries=0)
        return self._client

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "model": self.model}

    def request_body(self, messages: Sequence[Mapping], structured_outputs: Mapping | None = None, **params) -> dict:
        body: dict = {"model": self.model, "messages": [dict(m) for m in messages]}
        for k in _SAMPLING_KEYS:
            if params.get(k) is not None:
                body[k] = params[k]
        unknown = set(params) - set(_SAMPLING_KEYS)
        if unknown:
            raise TypeError(f"unsupported request parameters: {sorted(unknown)}")
        if structured_outputs:
            body["extra_body"] = {"structured_outputs": to_plain(structured_outputs)}
        return body

    def cache_key(self, body: Mapping) -> str:
        return hashlib.sha256(_canonical({"judge": self.identity(), "request": body}).encode()).hexdigest()

    def _bump(self, **inc) -> None:
        with self._lock:
            for k, v in inc.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def _error(self, kind: str) -> None:
        with self._lock:
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    def _retry_delay(self, attempt: int, exc: Exception | None) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        delay *= 1.0 + 0.25 * random.random()
        resp = getattr(exc, "response", None)
        ra = resp.headers.get("retry-after") if resp is not None and hasattr(resp, "headers") else None
        if ra:
            try:
                delay = max(delay, min(float(ra), self.backoff_max))
            except ValueError:
                pass
        return min(delay, self.backoff_max * 1.25)

    def _acquire(self) -> bool:
        """Count one request about to be sent, or say the budget is spent (then nothing is sent)."""
        with self._budget:
            while True:
                if self.stats.budget_exhausted:
                    return False
                spent_out = self.max_requests and self.stats.requests >= self.max_requests
                if not spent_out and self.max_cost_usd:
                    spent = self.stats.cost_usd
                    if spent >= self.max_cost_usd or self._no_usage:  # unknown cost: stop rather than overspend
                        spent_out = True
                    elif self._dearest is None or spent + (self._in_flight + 1) * self._dearest > self.max_cost_usd:
                        if self._in_flight:  # wait for the responses in flight: their cost decides
                            self._budget.wait()
                            continue
                        spent_out = self._dearest is not None  # the next one would pass the cap
                if spent_out:
                    self.stats.budget_exhausted = True
                    log.warning(
                        "judge %s: budget spent (max_requests=%d, max_cost_usd=%g; %d requests sent, "
                        "%.6f USD): no further requests are sent",
                        self.name,
                        self.max_requests,
                        self.max_cost_usd,
                        self.stats.requests,
                        self.stats.cost_usd,
                    )
                    self._budget.notify_all()
                    return False
                self.stats.requests += 1
                self._in_flight += 1
                return True

    def _release(self, rec: dict | None = None) -> None:
        """A request is over: account a response's tokens and cost, free its slot."""
        with self._budget:
            if rec is not None:
                u = rec["usage"]
                if not u and self.max_cost_usd and not self._no_usage:
                    self._no_usage = True
                    log.warning(
                        "judge %s: the endpoint reports no token usage: judge.max_cost_usd cannot be "
                        "enforced, so no further requests are sent",
                        self.name,
                    )
                cost = (
                    u.get("prompt_tokens", 0) * self.price_in + u.get("completion_tokens", 0) * self.price_out
                ) / 1e6
                self.stats.responses += 1
                self.stats.prompt_tokens += u.get("prompt_tokens", 0)
                self.stats.completion_tokens += u.get("completion_tokens", 0)
                self.stats.cost_usd += cost
                self._dearest = cost if self._dearest is None else max(self._dearest, cost)
            self._in_flight -= 1
            self._budget.notify_all()

    def _send(self, body: dict) -> dict:
        """The response record of one request (with retries), accounted; raises JudgeRequestError
        when it fails for good and _BudgetStop when the budget is spent before it could be sent."""
        import openai  # lazy: openai (~0.5 s)

        api = self._api()
        attempt = 0
        while True:
            if not self._acquire():
                raise _BudgetStop()
            exc: Exception
            try:
                resp = api.chat.completions.create(**body)
            except openai.APITimeoutError as e:
                kind, exc = "timeout", e
            except openai.APIConnectionError as e:
                kind, exc = "connection", e
            except openai.RateLimitError as e:
                kind, exc = "429", e
            except openai.APIStatusError as e:
                kind, exc = str(e.status_code), e
            except BaseException:
                self._release()
                raise
            else:
                try:
                    rec = self._record(resp)
                except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
                    self._release()
                    self._error("malformed")
                    raise JudgeRequestError(f"judge {self.name}: malformed response ({type(e).__name__}: {e})") from e
                self._release(rec)
                return rec
            self._release()
            self._error(kind)
            if isinstance(exc, openai.APIStatusError) and kind != "429" and exc.status_code < 500:
                raise JudgeRequestError(f"judge {self.name}: HTTP {exc.status_code}: {exc.message}") from exc
            if attempt >= self.max_retries:
                raise JudgeRequestError(f"judge {self.name}: {kind} after {attempt + 1} attempts: {exc}") from exc
            delay = self._retry_delay(attempt, exc)
            log.warning("judge %s: %s, retry %d/%d in %.2fs", self.name, kind, attempt + 1, self.max_retries, delay)
            self._bump(retries=1)
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _record(resp) -> dict:
        ch = resp.choices[0]
        lp = None
        if getattr(ch, "logprobs", None) is not None and ch.logprobs.content is not None:
            lp = [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "top_logprobs": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])],
                }
                for t in ch.logprobs.content
            ]
        u = resp.usage
        usage = (
            {"prompt_tokens": int(u.prompt_tokens or 0), "completion_tokens": int(u.completion_tokens or 0)}
            if u
            else {}
        )
        return {"text": ch.message.content, "finish_reason": ch.finish_reason, "logprobs": lp, "usage": usage}

    # -- public -----------------------------------------------------------------------------
    def _run_one(self, body: dict, key: str) -> ChatResult:
        try:
            rec = self._send(body)
        except JudgeRequestError as e:
            self._bump(failures=1)
            return ChatResult(error=str(e), key=key)
        except _BudgetStop:
            self._bump(budget_skipped=1)
            return ChatResult(
                error=f"judge {self.name}: {BUDGET_ERROR} (max_requests={self.max_requests}, "
                f"max_cost_usd={self.max_cost_usd:g}): not sent",
                key=key,
                budget_stopped=True,
            )
        if self.cache is not None:
            self.cache.put(
                key,
                {
                    "request": body,
                    "judge": self.identity(),
                    "response": rec,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
            )
        return ChatResult(key=key, **rec)

    def chat(self, messages: Sequence[Mapping], structured_outputs: Mapping | None = None, **params) -> ChatResult:
        """One chat completion (from the cache when this exact request was answered before).
        Failures come back as a result with ``error`` set (and are counted), never raised."""
        return self.chat_many([{"messages": messages, "structured_outputs": structured_outputs, **params}])[0]

    def chat_many(self, requests: Sequence[Mapping], desc: str | None = None) -> list[ChatResult]:
        """Many chat completions, up to ``max_concurrency`` in flight; results in request order.
        Each request is a dict of :meth:`chat`'s arguments.  Identical requests are sent once."""
        bodies = [self.request_body(**dict(r)) for r in requests]
        keys = [self.cache_key(b) for b in bodies]
        results: dict[str, ChatResult] = {}
        todo: dict[str, dict] = {}
        for k, b in zip(keys, bodies):
            if k in results or k in todo:
                continue
            rec = self.cache.get(k) if self.cache is not None else None
            if rec is not None:
                self._bump(cache_hits=1)
                results[k] = ChatResult(cached=True, key=k, **rec["response"])
            else:
                todo[k] = b
        if todo:
            if desc:
                log.info("judge %s: %s: %d requests (%d cached)", self.name, desc, len(todo), len(results))
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo))) as ex:
                for k, res in zip(todo, ex.map(lambda kb: self._run_one(kb[1], kb[0]), todo.items())):
                    results[k] = res
        return [results[k] for k in keys]

    def summary(self) -> dict:
        return {"judge": self.identity(), **self.stats.as_dict()}

    def budget_report(self) -> dict:
        """The budget and what was spent of it, with a one-line ``message`` when it ran out."""
        s = self.stats
        out = {
            "max_requests": self.max_requests,
            "max_cost_usd": self.max_cost_usd,
            "exhausted": s.budget_exhausted,
            "requests_sent": s.requests,
            "cost_usd": round(s.cost_usd, 6),
            "cache_hits": s.cache_hits,
            "not_sent": s.budget_skipped,
            "message": None,
        }
        if s.budget_exhausted:
            if self._no_usage:
                out["no_usage"] = True
            caps = ", ".join(
                x
                for x in (
                    f"judge.max_requests={self.max_requests}" if self.max_requests else "",
                    f"judge.max_cost_usd={self.max_cost_usd:g}" if self.max_cost_usd else "",
                )
                if x
            )
            out["message"] = (
                f"judge budget exhausted ({caps}): {s.requests} requests sent for {s.cost_usd:.6f} USD, "
                f"{s.budget_skipped} judge requests not made (counted in run.json); the answers "
                f"received are cached, so a rerun with a higher budget pays only for the rest"
            )
            if self._no_usage:
                out["message"] += " (the endpoint reports no token usage, so judge.max_cost_usd cannot be enforced)"
        return out


def resolve_data_file(path: str | os.PathLike | None, source: str | None, what: str) -> Path:
    """A local copy of a judge's data file: ``path`` when given (a local file wins), else
    ``source``: ``hf://datasets/<owner>/<repo>/<file in repo>`` (Hugging Face Hub, cached by
    huggingface_hub) or an ``https://`` URL (downloaded once into ``<judge cache>/data/``)."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{what}: no such file {p}")
        return p
    if not source:
        raise ValueError(f"{what}: neither a local path nor a source is configured")
    if source.startswith("hf://datasets/"):
        from huggingface_hub import hf_hub_download  # lazy: huggingface_hub (~0.1 s)

        owner, repo, filename = source[len("hf://datasets/") :].split("/", 2)
        try:
            return Path(hf_hub_download(repo_id=f"{owner}/{repo}", filename=filename, repo_type="dataset"))
        except Exception as e:
            raise RuntimeError(
                f"{what}: could not fetch {source} from the Hub ({type(e).__name__}); "
                f"give a local copy in the judge config's path field"
            ) from e
    if source.startswith(("https://", "http://")):
        target = (
            default_cache_dir() / "data" / hashlib.sha256(source.encode()).hexdigest()[:16] / source.rsplit("/", 1)[-1]
        )
        if not target.is_file():
            try:
                with urllib.request.urlopen(source, timeout=60) as r:
                    text = r.read().decode("utf-8")
            except Exception as e:
                raise RuntimeError(
                    f"{what}: could not download {source} ({type(e).__name__}: {e}); "
                    f"give a local copy in the judge config's path field"
                ) from e
            atomic_write_text(target, text)
        return target
    p = Path(source).expanduser()
    if p.is_file():
        return p
    raise ValueError(f"{what}: unsupported source {source!r} (hf://datasets/..., https://... or a file)")


def read_json_or_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a .json (a list), .jsonl, or either gzipped."""

    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        text = f.read()
    name = p.name[:-3] if p.suffix == ".gz" else p.name
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of rows")
    return data
