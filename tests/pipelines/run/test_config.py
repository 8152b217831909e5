"""Config files and values the run would reject are rejected when the config is loaded or checked, naming the
file and the key: unreadable files, unknown inputs, data-free checks in the typed configs, and the checks that
need the language registry or a look at the files a config names (`check_stages`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.run.config import (
    ConfigError,
    RunConfig,
    check_stages,
    import_builtin_stages,
    load_config,
)


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_a_config_that_is_not_utf8_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run_dir: runs/x\n# Müller's run\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: line 2 is not UTF-8 text \(byte 0xfc\); save the config as UTF-8"):
        load_config(path)


def test_a_folder_given_as_the_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=rf"{tmp_path}: is a folder; give the config file"):
        load_config(tmp_path)


def test_an_input_must_be_a_registered_stage_but_need_not_be_configured(tmp_path):
    path = write(tmp_path, {"stages": {"parse": {"inputs": ["a_stage_that_does_not_exist"]}}})
    with pytest.raises(ConfigError, match=r"stages\.parse\.inputs: unknown stages \['a_stage_that_does_not_exist'\]; "
                                          r"known: assemble, .*dedup, .*mine, .*synthesize"):
        load_config(path)
    config = load_config(write(tmp_path, {"stages": {"parse": {"inputs": ["synthesize"]}}}))  # read from the run directory
    assert list(config.stages) == ["parse"]


@pytest.mark.parametrize(
    ("stage", "values", "message"),
    [
        ("label", {"votes": 7}, r"stages\.label\.votes: 7 is odd; votes are split evenly over both orders"),
        ("label", {"consensus": "most"}, r"stages\.label\.consensus: Input should be 'all' or 'pooled'"),
        ("eval", {"model": "m", "benchmark": "b", "system_mode": "bogus"},
         r"stages\.eval\.system_mode: Input should be 'none', 'full' or 'per-criterion'"),
        ("eval", {"model": "m", "benchmark": "b", "dtype": "int3"}, r"stages\.eval\.dtype: Input should be 'float32'"),
        ("synthesize", {"inputs": [], "instruct": [{"name": "human-eval"}, {"name": "human-eval", "bug_injection": "llm"}]},
         r"stages\.synthesize: instruct\[1\] \(human-eval\): bug_injection 'llm' needs `stages\.synthesize\.llm`"),
        ("synthesize", {"classifier": {"kind": "bayes", "path": "c"}},
         r"stages\.synthesize\.classifier\.kind: unknown classifier kind 'bayes'; known: tfidf-logreg, transformers"),
    ],
)
def test_data_free_checks_fail_when_the_config_is_loaded_naming_the_key(tmp_path, stage, values, message):
    path = write(tmp_path, {"stages": {stage: values}})
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")


def test_check_stages_runs_what_needs_the_registry_or_the_files_and_names_every_problem(tmp_path):
    import_builtin_stages()
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "venus.jsonl").write_text("{}\n")
    stages = {
        "mine": {"repos": [str(tmp_path / "no-repo")]},
        "external": {"sources": [{"name": "venus", "path": str(tmp_path / "sets" / "*.jsonl")},
                                 {"name": "venus", "label": "b", "path": str(tmp_path / "missing.jsonl")}]},
        "parse": {"max_error_share": {"default": 0.1, "Python": 0.2, "Klingon": 0.1}},
    }
    config = RunConfig(run_dir=str(tmp_path / "run"), stages=stages)
    with pytest.raises(ConfigError) as error:
        check_stages(config)
    assert str(error.value).splitlines() == [
        f"stages.mine.repos: '{tmp_path / 'no-repo'}' does not exist",
        f"stages.external.sources[1] (venus).path: '{tmp_path / 'missing.jsonl'}': no such file or folder",
        "stages.parse.max_error_share: unknown languages ['Klingon']; known: C, C#, C++, Go, Java, JavaScript, Python, Ruby "
        "(and 'default')",
    ]
    with pytest.raises(ConfigError, match="nothing to mine"):
        check_stages(RunConfig(stages={"mine": {}}))


def test_check_stages_refuses_an_object_store_for_a_stage_that_keeps_local_files():
    import_builtin_stages()
    check_stages(RunConfig(run_dir="gs://bucket/run", stages={"dedup": {}}))
    with pytest.raises(ConfigError, match=r"stage 'label' keeps the judges' answer cache .* run_dir is 'gs://bucket/run'"):
        check_stages(RunConfig(run_dir="gs://bucket/run", stages={"label": {}}))


def test_a_config_with_nothing_wrong_passes_check_stages(tmp_path):
    import_builtin_stages()
    config = RunConfig(run_dir=str(tmp_path), stages={"parse": {"max_error_share": {"default": 0.1, "C": 0.5}}, "label": {},
                                                      "dedup": {}, "assemble": {}})
    check_stages(config)
