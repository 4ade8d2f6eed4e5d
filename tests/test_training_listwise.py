"""Listwise losses (po_bench/training/listwise.py) against explicit-loop transcriptions of their equations,
gradients, config-time errors and the world's rated lists (the listwise trainer's real optimizer steps on
them: tests/test_trl_listwise.py; rated lists from files: tests/test_formats_ranked.py)."""

import math

import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.training import listwise

from .conftest import compose as _compose
from .helpers import LIST_DATA, world_lists

# Hand-chosen lists: (policy log-probs, reference log-probs, annotator scores), best first by score; the second
# has a tie, the third disagrees with the policy's order, the fourth is a list of two.
LISTS = [
    ([-12.0, -15.0, -9.0, -20.0], [-13.0, -14.0, -10.5, -19.5], [2.1, 1.4, 0.3, -0.5]),
    ([-5.0, -6.5, -6.0, -8.0], [-5.5, -6.0, -6.2, -7.0], [1.0, 0.5, 0.5, -1.0]),
    ([-30.0, -10.0, -12.0], [-29.0, -11.5, -12.5], [0.9, 0.2, -0.4]),
    ([-7.0, -6.0], [-6.5, -6.4], [1.0, 0.0]),
]


def log_sig(x):
    return -math.log1p(math.exp(-x))


def ref_labels(scores, label):
    """LiPO's average win rate against the list's other responses (a tie counts 1/2), or the raw scores."""
    n = len(scores)
    if label == "score":
        return list(scores)
    return [
        sum(1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0 for j in range(n) if j != i)
        / (n - 1)
        for i in range(n)
    ]


def ref_positions(values):
    """1-based rank of each entry by value, highest first, ties in list order."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return [order.index(i) + 1 for i in range(len(values))]


def ref_lipo(lp, rp, scores, beta, label):
    # Liu et al. (2024), LiPO-lambda: sum_{psi_i > psi_j} Delta_ij log(1 + exp(-(s_i - s_j))), s = beta log pi/ref,
    # Delta_ij = |G_i - G_j| |1/D(tau_i) - 1/D(tau_j)|, G = 2^psi - 1, D(tau) = log(1 + tau), tau the rank by s
    n = len(lp)
    s = [beta * (lp[i] - rp[i]) for i in range(n)]
    psi = ref_labels(scores, label)
    tau = ref_positions(s)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if psi[i] > psi[j]:
                G_i, G_j = 2 ** psi[i] - 1, 2 ** psi[j] - 1
                D_i, D_j = math.log(1 + tau[i]), math.log(1 + tau[j])
                delta = abs(G_i - G_j) * abs(1 / D_i - 1 / D_j)
                total += delta * math.log(1 + math.exp(-(s[i] - s[j])))
    return total


def ref_irpo(lp, rp, scores, beta, label, position):
    # Wu et al. (2025), IRPO as the authors' rdpo_loss: -1/n sum_i w_i log sig(-log(1/(n-1) sum_{j!=i}
    # exp(beta (r_j - r_i)))), r = log pi/ref, w_i = (2^psi_i - 1) / log2(1 + pos_i)
    n = len(lp)
    r = [lp[i] - rp[i] for i in range(n)]
    psi = ref_labels(scores, label)
    pos = ref_positions(r if position == "policy" else scores)
    total = 0.0
    for i in range(n):
        w = (2 ** psi[i] - 1) / math.log2(1 + pos[i])
        mean_exp = sum(math.exp(beta * (r[j] - r[i])) for j in range(n) if j != i) / (n - 1)
        total += w * log_sig(-math.log(mean_exp))
    return -total / n


def ref_adpo_list(lp, rp, scores, beta, tau):
    # Wang (2025), ADPO: KL(q || softmax((l - l_anc)/tau_anc)), tau_anc = 1/beta, q = softmax(scores/tau)
    u = [beta * (a - b) for a, b in zip(lp, rp)]
    zu = sum(math.exp(x) for x in u)
    zq = sum(math.exp(x / tau) for x in scores)
    q = [math.exp(x / tau) / zq for x in scores]
    p = [math.exp(x) / zu for x in u]
    return sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))


FORMULAS = {
    "lipo": (ref_lipo, [{"beta": 0.5, "label": "win_rate"}, {"beta": 0.1, "label": "score"}]),
    "irpo": (
        ref_irpo,
        [
            {"beta": 0.5, "label": "win_rate", "position": "policy"},
            {"beta": 1.0, "label": "score", "position": "label"},
        ],
    ),
    "adpo_list": (ref_adpo_list, [{"beta": 0.5, "tau": 1.0}, {"beta": 2.0, "tau": 0.3}]),
}


def _stats(lists, requires_grad=False):
    """One padded batch of lists (a shorter list padded with zeros, masked)."""
    K = max(len(x[0]) for x in lists)

    def pad(i):
        return [list(x[i]) + [0.0] * (K - len(x[i])) for x in lists]

    t = lambda v: torch.tensor(v, dtype=torch.float64)
    lp = t(pad(0)).requires_grad_(requires_grad)
    mask = torch.tensor([[j < len(x[0]) for j in range(K)] for x in lists])
    return listwise.ListStats(lp, t(pad(1)), torch.ones_like(lp), t(pad(2)), mask)


def test_every_listwise_loss_has_a_formula_test():
    # losses with per-step inputs (ListwiseSpec.steps: TPO) have theirs in tests/test_tpo.py
    assert set(FORMULAS) == {n for n, s in listwise.LISTWISE.items() if not s.steps}


def _fn_hp(name, hp):
    return listwise.fn_args(name, hp)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_matches_the_equation_on_padded_batches(name):
    ref_fn, hps = FORMULAS[name]
    for hp in hps:
        out = listwise.LISTWISE[name].fn(_stats(LISTS), **hp)
        for b, (lp, rp, sc) in enumerate(LISTS):
            assert out.losses[b].item() == pytest.approx(ref_fn(lp, rp, sc, **hp), abs=1e-9), (name, hp, b)


def _num_grad(fn, lp, i, rp, sc, hp, h=1e-6):
    up, down = list(lp), list(lp)
    up[i] += h
    down[i] -= h
    return (fn(up, rp, sc, **hp) - fn(down, rp, sc, **hp)) / (2 * h)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_gradient_matches_the_equation(name):
    """d loss / d log pi(y_i|x) for every response equals the numerical derivative of the transcription
    (away from ties of the policy's ranks, where LiPO's tau and IRPO's positions jump)."""
    ref_fn, hps = FORMULAS[name]
    for hp in hps:
        s = _stats(LISTS, requires_grad=True)
        listwise.LISTWISE[name].fn(s, **hp).losses.sum().backward()
        for b, (lp, rp, sc) in enumerate(LISTS):
            for i in range(len(lp)):
                assert s.logps.grad[b, i].item() == pytest.approx(_num_grad(ref_fn, lp, i, rp, sc, hp), abs=1e-6)
            assert torch.all(s.logps.grad[b, len(lp) :] == 0)  # padded entries get no gradient


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_gradient_signs_at_the_reference(name):
    """From policy = reference: raising the best response's log-prob lowers the loss, raising the worst's
    raises it."""
    _, hps = FORMULAS[name]
    lp = [-10.0, -11.0, -12.0, -9.0]
    s = _stats([(lp, lp, [2.0, 1.0, 0.0, -1.0])], requires_grad=True)
    listwise.LISTWISE[name].fn(s, **hps[0]).losses.sum().backward()
    g = s.logps.grad[0]
    assert g[0] < 0 and g[3] > 0, g


def test_lists_of_two_reduce_to_the_pairwise_losses():
    """A pair with scores (1, 0): IRPO (win-rate labels) is DPO / 2 (the mean over the list's two items, the
    worst weighted 0); listwise ADPO is the pairwise adpo with
    q = sig(1/tau); LiPO is DPO times Delta = |1/ln 2 - 1/ln 3| (policy = reference ranks)."""
    from po_bench.training import losses

    lp, rp = [-7.0, -6.0], [-6.5, -6.4]
    h = (lp[0] - rp[0]) - (lp[1] - rp[1])
    s = _stats([(lp, rp, [1.0, 0.0])])
    assert listwise.irpo(s, 0.5, "win_rate", "label").losses.item() == pytest.approx(-log_sig(0.5 * h) / 2, abs=1e-12)
    pair = losses.PairStats(*(torch.tensor([x], dtype=torch.float64) for x in (lp[0], lp[1], 1, 1, rp[0], rp[1])))
    want = losses.adpo(pair, beta=0.5, q=1 / (1 + math.exp(-1 / 0.7))).losses.item()
    assert listwise.adpo_list(s, 0.5, 0.7).losses.item() == pytest.approx(want, abs=1e-12)
    same = _stats([(lp, lp, [1.0, 0.0])])
    d = abs(1 / math.log(2) - 1 / math.log(3))
    assert listwise.lipo(same, 0.5, "win_rate").losses.item() == pytest.approx(d * math.log(2), abs=1e-12)


def test_win_rate_labels_and_positions():
    scores = torch.tensor([[3.0, 1.0, 1.0, 0.0, 9.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert listwise.win_rate_labels(scores, mask).tolist() == [[1.0, 0.5, 0.5, 0.0, 0.0]]
    assert listwise.rank_positions(scores, mask).tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0]]


# ---- config-time errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=lipo"], "loss=lipo needs dataset.pair_strategy=list (got best_vs_rest)"),
        (["loss=irpo", "dataset.pair_strategy=list"], "loss=irpo needs dataset.k_samples=4 (got 2)"),
        (["loss=dpo", *LIST_DATA], "dataset.pair_strategy=list builds rated lists, not pairs: loss=dpo needs pairs"),
        (["loss=lipo", *LIST_DATA, "noise=flip", "noise.rate=0.1"], "dataset.pair_strategy=list has no pairs"),
        (["loss=lipo", *LIST_DATA, "dataset.curriculum=easy_to_hard"], "set dataset.curriculum=none"),
        (["loss=lipo", *LIST_DATA, "loss.args.label=rank"], "loss.args.label='rank' for lipo: allowed win_rate, score"),
        (["loss=irpo", *LIST_DATA, "loss.args.position=x"], "loss.args.position='x' for irpo: allowed policy, label"),
        (["loss=adpo_list", *LIST_DATA, "loss.args.tau=0"], "loss.args.tau=0 for adpo_list: allowed (0, inf)"),
        (
            ["loss=adpo_list", *LIST_DATA, "loss.args.anchor=ema"],
            "loss.args.anchor='ema' for adpo_list: allowed fixed, dynamic",
        ),
        (
            ["loss=adpo_list", *LIST_DATA, "loss.args.anchor_rate=0"],
            "loss.args.anchor_rate=0 for adpo_list: allowed (0, 1]",
        ),
        (["loss=lipo", *LIST_DATA, "+loss.args.gamma=1"], "loss.args.gamma is not a hyperparameter of lipo"),
        (["loss=adpo_list", *LIST_DATA, "loss.args.anchor=dynamic", "model.lora.enabled=true"], "anchor=dynamic"),
    ],
)
def test_listwise_requirements_fail_at_config_time(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)


@pytest.mark.parametrize("loss", sorted(FORMULAS))
def test_the_listwise_configs_validate(loss):
    validate(_compose([f"loss={loss}", *LIST_DATA]))


# ---- the data ------------------------------------------------------------------------------------------------


def test_world_lists_are_the_annotators_ranking():
    rows, prompts, samples = world_lists()
    assert rows and all(len(r["responses"]) == len(r["scores"]) == len(r["gold"]) >= 2 for r in rows)
    for r in rows:
        assert r["scores"] == sorted(r["scores"], reverse=True) and r["ranks"] == list(range(len(r["responses"])))
        assert set(r["responses"]) <= set(samples[r["row"]]) and r["prompt"] == prompts[r["row"]]
    # the same Plackett-Luce draw as the pair strategies: best_vs_rest's chosen is the list's first response
    pairs = world.label_ranked(prompts, samples, world.Annotator(), 0, "best_vs_rest")
    firsts = {p["row"]: p["chosen"] for p in pairs}
    assert all(firsts[r["row"]] == r["responses"][0] for r in rows)
    with pytest.raises(ValueError, match="no pair order"):
        world.label_ranked(prompts, samples, world.Annotator(), 0, "list", "easy_to_hard")


def test_list_artifacts_are_keyed_by_the_strategy_and_the_reference_pass():
    from po_bench.data.sources import WorldSource
    from po_bench.specs import plan

    keys = lambda o: plan(_compose(o)).keys()
    k4, k4_list = keys(["dataset.k_samples=4"]), keys(["loss=lipo", *LIST_DATA])
    assert k4["pref_samples"] == k4_list["pref_samples"]  # the same k samples
    assert k4["pairs"] != k4_list["pairs"] and "ref_logps" in k4_list
    p = plan(_compose(["loss=lipo", *LIST_DATA]))
    assert p.pairs["source"]["ranking"]["pair_strategy"] == "list"
    # k = 2 rated lists are not the default run's one pair
    assert keys(["loss=lipo", "dataset.pair_strategy=list", "loss.requires={}"])["pairs"] != keys([])["pairs"]
    # the listwise reference pass stores k log-probs per row: never shared with a pairwise one; a moving
    # anchor has none
    assert p.ref_logps["args"] == {"view": "list"}
    assert keys(["loss=adpo_list", *LIST_DATA, "loss.args.anchor=dynamic"]).get("ref_logps") is None
    src = WorldSource(WorldSource.spec_of(_compose(["loss=lipo", *LIST_DATA]).dataset))
    stats = src.describe(world_lists()[0], None, 48)
    assert stats["n_rows"] > 0 and stats["k_max"] <= 4 and 0.5 < stats["annotator_gold_agreement"] <= 1.0


# ---- real optimizer steps of the listwise trainer ------------------------------------------------------------


def test_a_ranked_file_becomes_the_list_artifact(tmp_path, tokenizer):
    """dataset.kind=hf format=ranked with dataset.pair_strategy=list: the pairs artifact holds rated lists (the
    strategy in its key), the held-out pairs are best vs worst of held-out lists; other strategies keep today's
    key (no pair_strategy field)."""
    import json

    from omegaconf import OmegaConf

    from po_bench.data.schema import DatasetConfig
    from po_bench.data.sources import FileSource

    f = tmp_path / "r.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": "write about apple =>",
                    "responses": [" the apple", " a river", " old stone"],
                    "scores": [i % 3, 2, 0.5],
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    cfg = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig),
        {"kind": "hf", "path": str(f), "format": "ranked", "pair_strategy": "list", "n_eval": 4},
    )
    spec = FileSource.spec_of(cfg)
    assert spec["pair_strategy"] == "list"
    art = FileSource.make_pairs(spec, None, 0, tokenizer=tokenizer, max_length=48)
    assert len(art["train"]) == 9 and art["train"][0]["scores"] == [2.0, 0.5, 0.0]
    assert art["eval"][0] == {"prompt": "write about apple =>", "chosen": " a river", "rejected": " the apple"}
    assert FileSource.describe(art["train"], None, 48)["lists"]["k_mean"] == 3.0
    assert "pair_strategy" not in FileSource.spec_of(OmegaConf.merge(cfg, {"pair_strategy": "best_vs_rest"}))
