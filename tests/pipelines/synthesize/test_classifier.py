"""Criterion classifiers: seed-labelled training data, tfidf-logreg, the transformers slot, split and evaluation."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from pipelines.synthesize.classifier import (
    CLASSIFIERS,
    TERM_MASK,
    CriteriaClassifier,
    ModelFileError,
    TfidfLogReg,
    TransformersClassifier,
    evaluate,
    held_out_split,
    load_classifier,
    masked_text,
    seed_labelled,
)
from pipelines.synthesize.criteria import SeedTerms
from schemas import CRITERIA
from tests.support.inputs import MESSAGES, UNSEEN

FC, RT, MEM, SEC, READ = CRITERIA

def rows(messages):
    return [{"commit": f"{i:040x}", "subject": subject, "message": body} for i, (_, subject, body) in enumerate(messages)]


@pytest.fixture(scope="module")
def terms():
    return SeedTerms()


@pytest.fixture(scope="module")
def trained(terms):
    texts, labels = seed_labelled(rows(MESSAGES), terms, mask_terms=True)
    return TfidfLogReg.train(texts, labels, seed=0)


def test_seed_labels_are_the_seed_criteria_and_masking_hides_every_term(terms):
    texts, labels = seed_labelled(rows(MESSAGES), terms, mask_terms=True)
    assert labels == [[criterion] if criterion else [] for criterion, _, _ in MESSAGES]
    assert texts[0] == f"{TERM_MASK} where parse_date returned the wrong day\nLeap years made the parser crash or return the wrong day."
    assert all(terms.criteria(text) == [] for text in texts)
    plain, plain_labels = seed_labelled(rows(MESSAGES), terms, mask_terms=False)
    assert plain[0].startswith("Fix bug where") and plain_labels == labels


def test_masking_merges_overlapping_terms_and_covers_whole_words(terms):
    # `memory map` is a runtime and a memory term; `index` masks "indexes" whole, `sanitiz` "sanitized".
    assert masked_text("Use a memory map for the indexes", terms) == f"Use a {TERM_MASK} for the {TERM_MASK}"
    assert masked_text("Sanitized paths", terms) == f"{TERM_MASK} paths"
    assert terms.spans("memory map") == [(0, 10, MEM), (0, 10, RT)]
    assert masked_text("Bump foundry to 2.0", terms) == "Bump foundry to 2.0"


def test_tags_unseen_messages_without_seed_terms(trained, terms):
    for criterion, subject, body in UNSEEN:
        text = f"{subject}\n{body}"
        assert terms.criteria(text) == [], text
        scores = trained.predict_proba([text])[0]
        assert max(scores, key=scores.get) == criterion, scores
        assert criterion in trained.criteria(text, threshold=0.5), scores
    assert trained.criteria("Bump version to 4.0.0\nRelease notes are in the changelog.") == []


def test_interface_shapes(trained):
    assert trained.labels == CRITERIA
    scores = trained.predict_proba(["Fix the wrong result in sum()", "Update docs"])
    assert len(scores) == 2 and all(list(s) == list(CRITERIA) and all(0.0 <= p <= 1.0 for p in s.values()) for s in scores)
    assert trained.predict_proba([]) == []
    assert trained.info["counts"][MEM] == {"positives": 6, "negatives": len(MESSAGES) - 6}


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "model")
    loaded = load_classifier("tfidf-logreg", tmp_path / "model")
    texts = [f"{s}\n{b}" for _, s, b in UNSEEN]
    assert loaded.predict_proba(texts) == trained.predict_proba(texts)
    sidecar = json.loads((tmp_path / "model" / "classifier.json").read_text())
    assert sidecar["format_version"] == TfidfLogReg.FORMAT_VERSION and sidecar["criteria"] == list(CRITERIA)
    assert sidecar["counts"][SEC]["positives"] == 6 and sidecar["sklearn_version"]


def test_bad_model_files_name_the_file(trained, tmp_path):
    folder = tmp_path / "model"
    trained.save(folder)
    model_file, sidecar_file = folder / TfidfLogReg.MODEL_FILE, folder / TfidfLogReg.SIDECAR

    model_file.write_bytes(model_file.read_bytes()[:100])  # truncated: hash no longer matches
    with pytest.raises(ModelFileError, match=str(model_file)):
        TfidfLogReg.load(folder)

    sidecar = json.loads(sidecar_file.read_text())
    model_file.write_bytes(b"not a pickle at all")  # a sidecar that vouches for a broken pickle
    sidecar_file.write_text(json.dumps({**sidecar, "sha256": hashlib.sha256(b"not a pickle at all").hexdigest()}))
    with pytest.raises(ModelFileError, match=f"{model_file}: cannot be unpickled"):
        TfidfLogReg.load(folder)

    sidecar_file.write_text(json.dumps({**sidecar, "format_version": 99}))
    with pytest.raises(ModelFileError, match=f"{sidecar_file}: format version 99"):
        TfidfLogReg.load(folder)

    sidecar_file.write_text("{not json")
    with pytest.raises(ModelFileError, match=str(sidecar_file)):
        TfidfLogReg.load(folder)

    with pytest.raises(ModelFileError, match=str(tmp_path / "nowhere" / "classifier.json")):
        TfidfLogReg.load(tmp_path / "nowhere")


def test_criterion_without_positives_is_skipped_with_a_message(terms, caplog):
    kept = [m for m in MESSAGES if m[0] != MEM]
    texts, labels = seed_labelled(rows(kept), terms, mask_terms=True)
    with caplog.at_level(logging.WARNING):
        model = TfidfLogReg.train(texts, labels)
    assert MEM not in model.labels and len(model.labels) == 4
    assert "Memory Efficiency not trained: no positives" in caplog.text
    assert model.info["skipped"] == {MEM: f"no positives among {len(kept)} training texts"}
    predicted = model.predict_proba(texts[:3])
    assert len(predicted) == 3 and all(MEM not in scores for scores in predicted)
    with pytest.raises(ValueError, match="no criterion can be trained"):
        TfidfLogReg.train(["Bump version", "Update docs"], [[], []])
    with pytest.raises(ValueError, match="'Speed' is not a criterion"):
        TfidfLogReg.train(["Make it fast"], [["Speed"]])


def test_held_out_split_is_deterministic_and_keeps_the_share():
    keys = [f"commit-{i}" for i in range(4000)]
    train, held_out = held_out_split(keys, 0.2, seed=7)
    assert (train, held_out) == held_out_split(keys, 0.2, seed=7)
    assert sorted(train + held_out) == list(range(len(keys)))
    assert abs(len(held_out) / len(keys) - 0.2) < 0.03
    # A key's side depends on the key alone, not on the other keys.
    _, few = held_out_split(keys[:100], 0.2, seed=7)
    assert few == [i for i in held_out if i < 100]
    assert held_out_split(keys, 0.2, seed=8)[1] != held_out
    assert held_out_split(keys[:10], 0.0) == (list(range(10)), [])
    assert held_out_split(keys[:10], 1.0) == ([], list(range(10)))
    with pytest.raises(ValueError, match="share"):
        held_out_split(keys, 1.5)


class KeywordClassifier(CriteriaClassifier):
    """A fixed rule per criterion, for hand-checked evaluation figures."""

    name = "keyword"
    labels = (FC, RT)

    def predict_proba(self, texts):
        return [{FC: 0.9 if "crash" in t else 0.1, RT: 0.7 if "slow" in t else 0.2} for t in texts]

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def test_evaluate_on_a_hand_checked_example():
    texts = ["crash on start", "crash when slow", "slow loop", "wrong result", "docs"]
    labels = [[FC], [RT], [RT], [FC], []]
    figures = evaluate(KeywordClassifier(), texts, labels, threshold=0.5)
    # FC called on texts 0 and 1, right on 0; true FC are 0 and 3.
    assert figures[FC] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2}
    # RT called on 1 and 2, both right; both true RT found.
    assert figures[RT] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "predicted": 2}
    assert figures[MEM] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    assert list(figures) == list(CRITERIA)
    # A higher threshold drops the RT calls (0.7).
    assert evaluate(KeywordClassifier(), texts, labels, threshold=0.8)[RT]["predicted"] == 0


def test_registry_names_the_known_classifiers():
    assert CLASSIFIERS.names() == ["tfidf-logreg", "transformers"]
    with pytest.raises(KeyError, match="known: tfidf-logreg, transformers"):
        load_classifier("bert", "/nowhere")


def tiny_sequence_classifier(folder, id2label):
    """A randomly initialised one-layer BERT and a word-level tokenizer built offline, saved to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    words = sorted({w.lower() for _, s, b in MESSAGES for w in f"{s} {b}".split()})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(id2label), id2label=id2label,
                        label2id={v: k for k, v in id2label.items()}, problem_type="multi_label_classification")
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_transformers_slot_scores_every_criterion_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Benchmark spellings and a shuffled order: columns are matched by label, not position.
    spellings = ["Security_Hardness", "Functional_Correctness", "Runtime_Efficiency", "Memory_Efficiency",
                 "Readability_Maintainability"]
    tiny_sequence_classifier(tmp_path / "bert", dict(enumerate(spellings)))
    model = load_classifier("transformers", tmp_path / "bert")
    model.batch_size = 4
    texts = [f"{s}\n{b}" for _, s, b in MESSAGES[:10]] + ["words it never saw " * 40]  # the last one is truncated
    scores = model.predict_proba(texts)
    assert len(scores) == len(texts) and model.labels == CRITERIA
    assert all(list(s) == list(CRITERIA) and all(0.0 <= p <= 1.0 for p in s.values()) for s in scores)
    assert model.device in ("cpu", "cuda")
    assert set(model.criteria(texts[0], threshold=0.0)) == set(CRITERIA)
    # Round trip through save: same scores.
    model.save(tmp_path / "copy")
    again = TransformersClassifier.load(tmp_path / "copy", batch_size=3)
    assert all(a == pytest.approx(b, abs=1e-5) for a, b in zip(again.predict_proba(texts), scores, strict=True))


def test_transformers_slot_rejects_labels_that_are_not_criteria(tmp_path):
    tiny_sequence_classifier(tmp_path / "bert", {0: "positive", 1: "negative"})
    with pytest.raises(ModelFileError, match=r"config.json: label 'positive' \(output 0\) is not a criterion"):
        TransformersClassifier.load(tmp_path / "bert")
    with pytest.raises(ModelFileError, match=str(tmp_path / "missing" / "config.json")):
        TransformersClassifier.load(tmp_path / "missing")
