"""Record schemas: Arrow derivation, Parquet round trip with schema metadata, published vocabularies."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from schemas import (
    ASPECTS,
    CODE_LANGUAGES,
    CORPUS_COLUMNS,
    CRITERIA,
    LANGUAGES,
    Candidate,
    CodeSummary,
    Commit,
    CorpusRow,
    JudgedPair,
    OrderCounts,
    Origin,
    Vote,
    arrow_schema,
    class_label_names,
    corpus_languages,
    from_row,
    schema_of,
    to_row,
)
from schemas.vocab import BENCHMARK_ASPECT_SPELLING, BENCHMARK_LANGUAGE_SPELLING
from storage import check_schema, class_labels, write_rows


def candidate(pair_id: str = "p1") -> Candidate:
    return Candidate(
        pair_id=pair_id,
        source="commit",
        criterion="Runtime Efficiency",
        language="Python",
        prompt="Make it faster.",
        prompt_origin="subject_fallback",
        chosen="def f(xs):\n    return set(xs)\n",
        rejected="def f(xs):\n    return list(set(xs))\n",
        origin=Origin(repo="octo/repo", commit="a" * 40, path="f.py"),
        license="mit",
        committed_at=1_600_000_000,
        chosen_facts=CodeSummary(True, 0.0, False, 6, 12, 2, 1, 0, [0, 4]),
    )


def judged() -> JudgedPair:
    vote = Vote("smollm2", "judge-v1", "chosen_first", 0, 7, "A", "match", "k1")
    bad = Vote("smollm2", "judge-v1", "chosen_second", 0, 7, None, "error", "k2", error="no verdict tag")
    return JudgedPair("p1", candidate(), [vote, bad], OrderCounts(matches=1), OrderCounts(errors=1), 0.5, False, "too_few_votes")


def test_published_vocabularies_in_published_order():
    assert LANGUAGES.names == ("JavaScript", "Python", "Ruby", "C++", "C", "Go", "Java", "C#", "NL")
    assert ASPECTS.names == (
        "Readability and Maintainability", "Runtime Efficiency", "Security Hardness", "Functional Correctness",
        "Memory Efficiency", "Helpfulness", "Harmlessness",
    )
    assert set(CRITERIA) <= set(ASPECTS.names) and len(CRITERIA) == 5
    assert set(CODE_LANGUAGES) == set(LANGUAGES.names) - {"NL"}


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("Cpp", "C++"), ("CSharp", "C#"), ("javascript", "JavaScript"), ("c#", "C#")],
)
def test_benchmark_language_spellings_are_aliases(spelling, name):
    assert LANGUAGES.canonical(spelling) == name


def test_benchmark_spellings_round_trip():
    for name, spelling in BENCHMARK_LANGUAGE_SPELLING.items():
        assert LANGUAGES.canonical(spelling) == name
    assert BENCHMARK_ASPECT_SPELLING["Readability and Maintainability"] == "Readability_Maintainability"
    for name, spelling in BENCHMARK_ASPECT_SPELLING.items():
        assert ASPECTS.canonical(spelling) == name
    assert ASPECTS.index("Functional_Correctness") == 3


def test_unknown_label_lists_known_ones():
    with pytest.raises(KeyError, match="unknown aspect 'speed'; known: Readability and Maintainability"):
        ASPECTS.canonical("speed")


@pytest.mark.parametrize("record", [candidate(), judged()], ids=["candidate", "judged"])
def test_parquet_round_trip_keeps_records_and_schema_metadata(tmp_path, record):
    path = str(tmp_path / "part-00000-of-00001.parquet")
    write_rows(path, [to_row(record)], type(record))
    table = pq.read_table(path)
    assert schema_of(table.schema.metadata) == (type(record).SCHEMA, type(record).VERSION)
    assert from_row(type(record), table.to_pylist()[0]) == record


def test_commit_schema_columns():
    names = arrow_schema(Commit).names
    assert names == [
        "repo", "commit", "parent", "path", "language", "license", "committed_at", "subject", "message",
        "before", "after", "split",
    ]
    assert str(arrow_schema(Commit).field("after").type) == "large_string"
    assert arrow_schema(Commit).field("license").nullable


def test_corpus_rows_load_with_datasets_class_labels(tmp_path):
    from datasets import load_dataset

    row = CorpusRow(
        system="", input="Fix the bug.", chosen="a", rejected="b", language=LANGUAGES.index("C#"),
        aspect=ASPECTS.index("Security Hardness"), source="commit", idx="p1", origin=Origin(repo="r"),
        license="mit", prompt_origin="recovered", verified=None, verification=None, votes_matches=6, votes_contradictions=1,
        votes_ties=1, votes_errors=0,
    )
    path = tmp_path / "part-00000-of-00001.parquet"
    write_rows(str(path), [to_row(row)], CorpusRow)
    dataset = load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names[: len(CORPUS_COLUMNS)] == list(CORPUS_COLUMNS)
    assert dataset.features["language"].names == list(LANGUAGES.names)
    assert dataset.features["aspect"].names == list(ASPECTS.names)
    assert dataset.features["language"].int2str(dataset[0]["language"]) == "C#"
    assert dataset.features["aspect"].int2str(dataset[0]["aspect"]) == "Security Hardness"


def test_from_row_names_the_missing_column():
    row = to_row(candidate())
    del row["chosen"]
    with pytest.raises(KeyError, match="Candidate row lacks column 'chosen'"):
        from_row(Candidate, row)


def test_corpus_languages_append_the_registry_after_the_published_names():
    registry = ["C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby", "Rust", "Cpp", "Kotlin", "rust"]
    grown = corpus_languages(registry)
    assert grown.names == (*LANGUAGES.names, "Rust", "Kotlin")  # registry order; aliases and repeats not added again
    assert grown.index("Rust") == 9 and grown.index("rust") == 9 and grown.index("Python") == LANGUAGES.index("Python")
    assert grown.index("Cpp") == LANGUAGES.index("C++") and "Kotlin" in grown and "Zig" not in grown
    assert corpus_languages(registry, "published") is LANGUAGES
    assert corpus_languages(["Python", "C"]) is LANGUAGES  # nothing to add: the published vocabulary itself
    with pytest.raises(ValueError, match="registry, published"):
        corpus_languages(registry, "all")


def test_run_class_labels_keep_published_indices_and_the_schema_identity():
    assert arrow_schema(CorpusRow, {"language": LANGUAGES.names}) is arrow_schema(CorpusRow)  # published: today's schema
    grown = arrow_schema(CorpusRow, {"language": (*LANGUAGES.names, "Rust")})
    assert grown.equals(arrow_schema(CorpusRow), check_metadata=False)
    assert schema_of(grown.metadata) == ("CorpusRow", CorpusRow.VERSION)
    assert class_label_names(grown.metadata, "language") == [*LANGUAGES.names, "Rust"]
    assert class_label_names(grown.metadata, "aspect") == list(ASPECTS.names)
    assert class_label_names(arrow_schema(Commit).metadata, "language") is None
    with pytest.raises(ValueError, match="must be the published"):
        arrow_schema(CorpusRow, {"language": ("Rust", *LANGUAGES.names)})  # would move every published index
    with pytest.raises(ValueError, match="must be the published"):
        arrow_schema(CorpusRow, {"language": (*LANGUAGES.names, "Rust", "Rust")})
    with pytest.raises(ValueError, match="not a ClassLabel column"):
        arrow_schema(CorpusRow, {"source": ("a",)})


def test_corpus_rows_with_a_grown_vocabulary_load_with_its_names(tmp_path):
    from datasets import load_dataset

    names = (*LANGUAGES.names, "Rust")
    row = CorpusRow(
        system="", input="Fix the bug.", chosen="a", rejected="b", language=9, aspect=ASPECTS.index("Security Hardness"),
        source="commit", idx="p1", origin=Origin(repo="r"), license="mit", prompt_origin="recovered", verified=None,
        verification=None, votes_matches=6, votes_contradictions=1, votes_ties=1, votes_errors=0,
    )
    path = tmp_path / "part-00000-of-00002.parquet"
    empty = tmp_path / "part-00001-of-00002.parquet"
    write_rows(str(path), [to_row(row)], CorpusRow, arrow_schema(CorpusRow, {"language": names}))
    write_rows(str(empty), [], CorpusRow, arrow_schema(CorpusRow, {"language": names}))
    for part in (path, empty):
        check_schema(str(part), CorpusRow)  # same record name and version
        assert class_labels(str(part), "language") == list(names)
    dataset = load_dataset("parquet", data_files=[str(path), str(empty)], split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.features["language"].names == list(names) and len(dataset) == 1
    assert dataset.features["language"].int2str(dataset[0]["language"]) == "Rust"
