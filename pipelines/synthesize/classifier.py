"""Criterion classifiers: a second pass after the seed terms, for commits whose messages the terms miss.

Every classifier scores each criterion independently (multi-label) behind one interface:
`predict_proba(texts)`, `criteria(text, threshold)`, `save(path)`, `load(path)`.

- `tfidf-logreg`: TF-IDF of word 1-2 grams and one balanced logistic regression per criterion,
  trained offline with scikit-learn on seed-labelled commits (`seed_labelled`, `train`).
- `transformers`: a local `AutoModelForSequenceClassification` folder whose labels are the
  criteria, scored with a sigmoid per label, in batches, on CUDA when there is one.

Security: `tfidf-logreg` model files are pickles (joblib), and unpickling runs whatever code the
file names: load only classifiers you trained. `transformers` folders are read without remote code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pipelines.core.registry import Registry
from pipelines.synthesize.criteria import SeedTerms
from schemas import ASPECTS, CRITERIA

log = logging.getLogger(__name__)

TERM_MASK = "…"
"""What a masked seed term becomes: not a word, so no classifier feature can stand for "a term was here"."""


class ModelFileError(ValueError):
    """A saved classifier cannot be loaded: missing, corrupt, another kind or format version."""


class CriteriaClassifier(ABC):
    """Criterion -> probability for commit texts (subject, newline, message)."""

    name: ClassVar[str]
    labels: tuple[str, ...]  # the criteria this classifier scores, in CRITERIA order

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One {criterion: probability} per text, for every criterion in `labels`."""

    def tag(self, texts: Sequence[str], threshold: float = 0.5) -> list[list[str]]:
        """The criteria at or above `threshold` for each text, in CRITERIA order."""
        return [[c for c in CRITERIA if scores.get(c, 0.0) >= threshold] for scores in self.predict_proba(texts)]

    def criteria(self, text: str, threshold: float = 0.5) -> list[str]:
        """The criteria of one text at or above `threshold`, in CRITERIA order."""
        return self.tag([text], threshold)[0]

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the classifier into the folder `path` (created if needed)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> CriteriaClassifier:
        """Read a classifier that `save` wrote (or, for `transformers`, any matching model folder)."""


CLASSIFIERS: Registry[type[CriteriaClassifier]] = Registry("criteria classifier")


def load_classifier(kind: str, path: str | Path) -> CriteriaClassifier:
    """`CLASSIFIERS[kind].load(path)`; an unknown kind fails with the known ones."""
    return CLASSIFIERS[kind].load(path)


# --- training data -------------------------------------------------------------------------------


def commit_text(row: Mapping[str, Any]) -> str:
    """What criteria are read from: the subject, a newline, the message (as the seed terms see it)."""
    return f"{row['subject']}\n{row['message']}"


def masked_text(text: str, terms: SeedTerms) -> str:
    """`text` with every seed-term occurrence (of any criterion) replaced by TERM_MASK.

    A mask runs to the end of the word, so that no ending of a stem (`sanitiz|ed`) is left to learn from.
    """
    pieces, end = [], 0
    for start, stop, _ in terms.spans(text):
        if start >= end:
            pieces.append(text[end:start])
            pieces.append(TERM_MASK)
        end = max(end, _WORD_END.match(text, stop).end())
    pieces.append(text[end:])
    return "".join(pieces)


_WORD_END = re.compile(r"\w*")


def seed_labelled(rows: Iterable[Mapping[str, Any]], terms: SeedTerms, mask_terms: bool) -> tuple[list[str], list[list[str]]]:
    """(texts, labels) of Commit rows labelled by the seed terms; an empty label list is a negative.

    With `mask_terms` the matched terms are masked out of the texts, so that a classifier learns
    the context around them, which is what it has to go on for the commits the terms miss.
    """
    texts, labels = [], []
    for row in rows:
        text = commit_text(row)
        labels.append(terms.criteria(text))
        texts.append(masked_text(text, terms) if mask_terms else text)
    return texts, labels


def held_out_split(keys: Sequence[str], share: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): a key is held out when its hash falls below `share`.

    The decision depends only on the key and the seed, so a commit stays on its side however the
    rest of the corpus changes.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"held-out share must be within [0, 1], got {share}")
    train, held_out = [], []
    for index, key in enumerate(keys):
        digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
        (held_out if int.from_bytes(digest, "big") / 2**64 < share else train).append(index)
    return train, held_out


def evaluate(classifier: CriteriaClassifier, texts: Sequence[str], labels: Sequence[Sequence[str]],
             threshold: float = 0.5) -> dict[str, dict[str, float | int]]:
    """Per criterion: precision, recall, f1, support (true positives + misses) and predicted (positives called)."""
    from sklearn.metrics import precision_recall_fscore_support

    if not texts or len(texts) != len(labels):
        raise ValueError(f"nothing to evaluate, or texts and labels differ in length: {len(texts)} texts, {len(labels)} label rows")
    truth = [[int(c in row) for c in CRITERIA] for row in _checked(labels)]
    calls = [[int(c in row) for c in CRITERIA] for row in classifier.tag(texts, threshold)]
    precision, recall, f1, support = precision_recall_fscore_support(truth, calls, average=None, labels=range(len(CRITERIA)),
                                                                     zero_division=0)
    return {
        criterion: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": sum(row[i] for row in calls),
        }
        for i, criterion in enumerate(CRITERIA)
    }


def _checked(labels: Sequence[Sequence[str]]) -> list[list[str]]:
    for index, row in enumerate(labels):
        for name in row:
            if name not in CRITERIA:
                raise ValueError(f"label row {index}: {name!r} is not a criterion; known: {', '.join(CRITERIA)}")
    return [list(row) for row in labels]


# --- tfidf-logreg --------------------------------------------------------------------------------


@CLASSIFIERS.register("tfidf-logreg")
class TfidfLogReg(CriteriaClassifier):
    """TF-IDF word 1-2 grams (sublinear tf) and one class-balanced logistic regression per criterion.

    The vectorizer is fit without labels, so one serves every criterion; TERM_MASK is not a word to
    it, so a masked term leaves no feature behind. Saved as a joblib pickle plus `classifier.json`
    (format version, criteria, scikit-learn version, training counts, the pickle's SHA-256). The
    hash is checked before unpickling; it catches a corrupt or swapped file, not a forged pair.
    """

    name = "tfidf-logreg"
    FORMAT_VERSION: ClassVar[int] = 1
    SIDECAR: ClassVar[str] = "classifier.json"
    MODEL_FILE: ClassVar[str] = "tfidf_logreg.joblib"

    def __init__(self, vectorizer: Any, models: dict[str, Any], info: dict[str, Any]):
        self.vectorizer = vectorizer
        self.models = models
        self.info = info  # training counts, skipped criteria, seed, scikit-learn version
        self.labels = tuple(c for c in CRITERIA if c in models)

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], seed: int = 0, C: float = 4.0) -> TfidfLogReg:  # noqa: N803
        """Fit on texts and their criteria; a criterion without both positives and negatives is skipped.

        `C` is the inverse regularisation strength of every logistic regression.
        """
        import numpy
        from sklearn import __version__ as sklearn_version
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        labels = _checked(labels)
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} label rows")
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode", min_df=1,
                                     max_features=200_000, dtype=numpy.float32)
        features = vectorizer.fit_transform(texts)
        models, counts, skipped = {}, {}, {}
        for criterion in CRITERIA:
            target = [int(criterion in row) for row in labels]
            positives = sum(target)
            counts[criterion] = {"positives": positives, "negatives": len(target) - positives}
            if positives == 0 or positives == len(target):
                missing = "positives" if positives == 0 else "negatives"
                skipped[criterion] = f"no {missing} among {len(target)} training texts"
                log.warning("tfidf-logreg: %s not trained: %s; it will never be predicted", criterion, skipped[criterion])
                continue
            # The dual solver is the fast one when texts are fewer than n-grams, as they mostly are.
            model = LogisticRegression(class_weight="balanced", C=C, solver="liblinear", dual=True, max_iter=2000,
                                       random_state=seed)
            models[criterion] = model.fit(features, target)
        if not models:
            raise ValueError(f"no criterion can be trained from {len(texts)} texts: each needs positives and negatives "
                             f"({'; '.join(f'{c}: {r}' for c, r in skipped.items())})")
        info = {"sklearn_version": sklearn_version, "seed": seed, "C": C, "texts": len(texts), "counts": counts, "skipped": skipped}
        return cls(vectorizer, models, info)

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        features = self.vectorizer.transform(list(texts))
        columns = {c: self.models[c].predict_proba(features)[:, list(self.models[c].classes_).index(1)] for c in self.labels}
        return [{c: float(columns[c][i]) for c in self.labels} for i in range(len(texts))]

    def save(self, path: str | Path) -> None:
        import joblib

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        model_file = folder / self.MODEL_FILE
        joblib.dump({"vectorizer": self.vectorizer, "models": self.models}, model_file, compress=3)
        sidecar = {"kind": self.name, "format_version": self.FORMAT_VERSION, "criteria": list(self.labels),
                   "model_file": self.MODEL_FILE, "sha256": _sha256(model_file), **self.info}
        (folder / self.SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TfidfLogReg:
        """Read a folder that `save` wrote. The pickle is unpickled only after its sidecar and hash check out."""
        import joblib
        from sklearn import __version__ as sklearn_version

        sidecar_file = Path(path) / cls.SIDECAR
        try:
            sidecar = json.loads(sidecar_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelFileError(f"{sidecar_file}: no such file; is {path} a folder written by tfidf-logreg save()?") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{sidecar_file}: not a readable classifier sidecar ({error})") from None
        if not isinstance(sidecar, dict) or sidecar.get("kind") != cls.name:
            found = sidecar.get("kind") if isinstance(sidecar, dict) else type(sidecar).__name__
            raise ModelFileError(f"{sidecar_file}: holds a {found!r} classifier, expected {cls.name!r}")
        if sidecar.get("format_version") != cls.FORMAT_VERSION:
            raise ModelFileError(f"{sidecar_file}: format version {sidecar.get('format_version')!r}, this code reads "
                                 f"{cls.FORMAT_VERSION}; train the classifier again")
        model_file = Path(path) / cls.MODEL_FILE
        if not model_file.is_file():
            raise ModelFileError(f"{model_file}: no such file (named by {sidecar_file})")
        if _sha256(model_file) != sidecar.get("sha256"):
            raise ModelFileError(f"{model_file}: SHA-256 differs from {sidecar_file}; the file is corrupt or was replaced")
        if sidecar.get("sklearn_version") != sklearn_version:
            log.warning("%s: trained with scikit-learn %s, loading with %s", model_file, sidecar.get("sklearn_version"),
                        sklearn_version)
        try:
            state = joblib.load(model_file)
            vectorizer, models = state["vectorizer"], state["models"]
        except Exception as error:  # noqa: BLE001 - an unpickling failure can be any exception
            raise ModelFileError(f"{model_file}: cannot be unpickled ({type(error).__name__}: {error})") from None
        if sorted(models) != sorted(sidecar.get("criteria", [])):
            raise ModelFileError(f"{model_file}: criteria {sorted(models)} differ from {sidecar_file}'s {sidecar.get('criteria')}")
        info = {key: sidecar[key] for key in ("sklearn_version", "seed", "C", "texts", "counts", "skipped") if key in sidecar}
        return cls(vectorizer, models, info)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- transformers --------------------------------------------------------------------------------


@CLASSIFIERS.register("transformers")
class TransformersClassifier(CriteriaClassifier):
    """A local sequence-classification model whose `id2label` are criteria; sigmoid per label (multi-label).

    The slot for a GPU classifier fine-tuned elsewhere: it reads a folder (`save_pretrained` of a
    model and its tokenizer) with `local_files_only`, never the network, and runs in batches on
    CUDA when available, else CPU. Label spellings such as `Functional_Correctness` are accepted.
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 32, max_length: int = 256, device: str | None = None,
                 source: str = "model"):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
        self.index = _label_index(model.config.id2label, source)
        self.labels = tuple(c for c in CRITERIA if c in self.index)

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        import torch

        scores: list[dict[str, float]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start:start + self.batch_size])
                encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                logits = self.model(**encoded.to(self.device)).logits
                probabilities = torch.sigmoid(logits.float()).cpu().tolist()
                scores.extend({c: row[self.index[c]] for c in self.labels} for row in probabilities)
        return scores

    def save(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 32, max_length: int = 256, device: str | None = None) -> TransformersClassifier:
        """Read a model folder offline; errors name the folder."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelFileError(f"{folder / 'config.json'}: no such file; give the folder a model was save_pretrained to")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelFileError(f"{folder}: not a loadable sequence-classification model ({error})") from None
        return cls(model, tokenizer, batch_size=batch_size, max_length=max_length, device=device,
                   source=str(folder / "config.json"))


def _label_index(id2label: Mapping[Any, str], source: str) -> dict[str, int]:
    """Criterion -> output column, from a model config's id2label; every label must be a criterion."""
    index = {}
    for column, label in id2label.items():
        criterion = ASPECTS.canonical(label) if label in ASPECTS else label
        if criterion not in CRITERIA:
            raise ModelFileError(f"{source}: label {label!r} (output {column}) is not a criterion; "
                                 f"id2label must name criteria: {', '.join(CRITERIA)}")
        if criterion in index:
            raise ModelFileError(f"{source}: criterion {criterion!r} is named by two outputs")
        index[criterion] = int(column)
    return index


__all__ = [
    "CLASSIFIERS",
    "TERM_MASK",
    "CriteriaClassifier",
    "ModelFileError",
    "TfidfLogReg",
    "TransformersClassifier",
    "commit_text",
    "evaluate",
    "held_out_split",
    "load_classifier",
    "masked_text",
    "seed_labelled",
]
