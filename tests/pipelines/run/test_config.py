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
        ("synthesize", {"inputs": []}, r"stages\.synthesize: nothing to synthesize; give `inputs` \(e\.g\. \[mine\]\) or `instruct`"),
        ("synthesize", {"inputs": [], "instruct": [{"name": "tasks"}]},
         r"stages\.synthesize\.instruct\[0\]: tasks: give `path` \(only 'human-eval' is packaged\)"),
        ("dedup", {"key": "chosen_side"}, r"stages\.dedup\.key: Input should be 'after', 'before', 'chosen', 'rejected' or 'pair'"),
        ("assemble", {"dedup": {"key": "both"}}, r"stages\.assemble\.dedup\.key: Input should be 'after', 'before'"),
        ("mine", {"refs": "branches"}, r"stages\.mine\.refs: Input should be 'head' or 'all'"),
        ("mine", {"min_message_chars": 50, "max_message_chars": 51},
         r"stages\.mine: min_message_chars \(50\) leaves no message length below max_message_chars \(51\)"),
        ("mine", {"bench_start": "2024-06-01", "bench_end": "2024-01-01"},
         r"stages\.mine: bench_start \(2024-06-01\) is not before bench_end \(2024-01-01\)"),
        ("parse", {"inputs": []}, r"stages\.parse\.inputs: \[\] reads no stage, and this stage has nothing to work on without one; "
                                  r"name the stages it reads \(default: \[synthesize\]\)"),
        ("train", {"model": "m", "inputs": []}, r"stages\.train\.inputs: \[\] reads no stage.*\(default: \[assemble\]\)"),
        ("eval", {"inputs": [], "model": "m"}, r"stages\.eval: name a `benchmark`, or read the assemble stage's held-out pairs"),
        ("external", {"sources": [{"name": "venus", "path": "v"}, {"name": "oracle", "path": "o"}]},
         r"stages\.external\.sources\[1\]: unknown set 'oracle'; known: codenet, venus"),
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


def test_check_stages_refuses_an_object_store_for_a_stage_that_keeps_local_files(monkeypatch):
    from pipelines.core import STAGES

    import_builtin_stages()
    check_stages(RunConfig(run_dir="gs://bucket/run", stages={"dedup": {}, "label": {}}))  # label's answers are files
    # train and eval stage their files through FileSystems: an object-store run_dir is accepted
    check_stages(RunConfig(run_dir="gs://bucket/run", stages={"train": {"model": "m"}, "eval": {}}))
    monkeypatch.setattr(STAGES["train"], "local_files", classmethod(lambda cls, config: "a program's working files (checkpoints)"))
    with pytest.raises(ConfigError, match=r"stage 'train' keeps a program's working files .* run_dir is 'gs://bucket/run'"):
        check_stages(RunConfig(run_dir="gs://bucket/run", stages={"train": {"model": "m"}}))


def test_a_config_with_nothing_wrong_passes_check_stages(tmp_path):
    import_builtin_stages()
    config = RunConfig(run_dir=str(tmp_path), stages={"parse": {"max_error_share": {"default": 0.1, "C": 0.5}}, "label": {},
                                                      "dedup": {}, "assemble": {}})
    check_stages(config)


def test_the_languages_an_external_source_selects_must_be_in_the_run_registry(tmp_path):
    import_builtin_stages()
    (tmp_path / "venus.jsonl").write_text("{}\n")
    source = {"name": "codenet", "path": str(tmp_path / "venus.jsonl"), "languages": ["Python", "Klingon"]}
    with pytest.raises(ConfigError, match=r"^stages\.external\.sources\[0\] \(codenet\)\.languages: \['Klingon'\] are not in the "
                                          r"language registry; known: C, C#"):
        check_stages(RunConfig(stages={"external": {"sources": [source]}}))


def test_an_instruction_file_that_is_not_there_is_named_before_the_run(tmp_path):
    import_builtin_stages()
    missing = tmp_path / "tasks.jsonl"
    config = RunConfig(stages={"synthesize": {"inputs": [], "instruct": [{"name": "tasks", "path": str(missing)}]}})
    with pytest.raises(ConfigError, match=rf"^stages\.synthesize\.instruct\[0\] \(tasks\)\.path: '{missing}' does not exist$"):
        check_stages(config)


# --- `inputs`: one declaration (the config field), one meaning of [] ----------------------------------------------------


def test_inputs_are_the_config_field_and_an_empty_list_reads_no_stage():
    from pipelines.core import STAGES

    import_builtin_stages()
    defaults = {name: STAGES[name].input_stages(STAGES[name].Config.model_validate(values)) for name, values in {
        "mine": {}, "synthesize": {}, "parse": {}, "dedup": {}, "label": {}, "assemble": {}, "train": {"model": "m"}, "eval": {},
        "external": {"sources": [{"name": "venus", "path": "v"}]}}.items()}
    assert defaults == {"mine": (), "synthesize": ("mine",), "parse": ("synthesize",), "dedup": ("parse",), "label": ("dedup",),
                        "assemble": ("label",), "train": ("assemble",), "eval": ("train", "assemble"), "external": ()}
    only_instructions = STAGES["synthesize"].Config.model_validate({"inputs": [], "instruct": [{"name": "human-eval"}]})
    assert STAGES["synthesize"].input_stages(only_instructions) == ()
    scored = STAGES["eval"].Config.model_validate({"inputs": [], "model": "m", "benchmark": "b"})
    assert STAGES["eval"].input_stages(scored) == ()
    assert STAGES["parse"].input_stages(STAGES["parse"].Config.model_validate({"inputs": ["external", "synthesize"]})) == (
        "external", "synthesize")


def test_a_stage_that_declares_inputs_as_a_class_attribute_is_refused():
    from pipelines.core import Stage, StageConfig

    with pytest.raises(TypeError, match=r"OldStyle: declare the stages it reads as the config field `inputs`"):
        class OldStyle(Stage[StageConfig]):
            inputs = ("parse",)


# --- `codepref config check` and `codepref run` say the same -----------------------------------------------------------


@pytest.mark.parametrize(
    "stages",
    [
        {"label": {"votes": 7}},  # a typed config's validator
        {"dedup": {"key": "chosen_side"}},
        {"synthesize": {"inputs": []}},
        {"parse": {"inputs": ["a_stage_that_does_not_exist"]}},  # the run config's own check
        {"parse": {"max_error_share": {"Klingon": 0.1}}},  # needs the language registry
        {"mine": {"tables": ["no-such-table.parquet"]}, "parse": {"max_error_share": {"Vulcan": 0.1}}},  # a file named; two problems
        {"dedup": {"inputs": ["label"]}, "label": {"inputs": ["dedup"]}},  # the stage order
    ],
)
def test_config_check_rejects_what_run_rejects_in_the_same_words(tmp_path, stages):
    from typer.testing import CliRunner

    from pipelines.cli import app

    path = write(tmp_path, {"run_dir": str(tmp_path / "run"), "stages": stages})
    checked = CliRunner().invoke(app, ["config", "check", str(path)])
    ran = CliRunner().invoke(app, ["run", str(path)])
    assert checked.exit_code == ran.exit_code == 2, (checked.output, ran.output)
    assert checked.output.strip() == ran.output.strip(), (checked.output, ran.output)  # (run's progress display may add a blank line)
    assert checked.output.startswith(f"error: {path}: ")
    assert not (tmp_path / "run").exists()  # the run stopped before it touched its directory


def test_files_a_stage_would_open_only_on_its_workers_are_looked_at_before_the_run(tmp_path):
    import_builtin_stages()
    missing = tmp_path / "missing"
    problems = {
        "assemble": ({"tokenizer": str(missing)}, f"stages.assemble.tokenizer: '{missing}' is neither a tokenizer.json nor a folder"),
        "synthesize": ({"classifier": {"path": str(missing)}}, f"stages.synthesize.classifier.path: '{missing}' is not a folder"),
        "eval": ({"model": str(missing), "benchmark": str(tmp_path)}, f"stages.eval.model: '{missing}' is not a folder"),
    }
    for name, (values, message) in problems.items():
        with pytest.raises(ConfigError) as error:
            check_stages(RunConfig(run_dir=str(tmp_path / "run"), stages={name: values}))
        assert str(error.value).startswith(message), name
    benchmark = {"benchmarks": [{"name": "crb", "path": str(missing / "crb.parquet")}]}
    with pytest.raises(ConfigError, match=r"^stages\.assemble\.benchmarks\[0\] \(crb\)\.path: .* does not exist$"):
        check_stages(RunConfig(run_dir=str(tmp_path / "run"), stages={"assemble": benchmark}))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    check_stages(RunConfig(run_dir=str(tmp_path / "run"), stages={"assemble": {"tokenizer": str(tmp_path / "tok")}}))


@pytest.mark.parametrize("key", ["runner", "stage_runners"])
def test_dask_runner_is_refused_when_the_config_is_loaded_naming_beams_limitations(tmp_path, key):
    runner = {"name": "DaskRunner"}
    document = {"runner": runner} if key == "runner" else {"stage_runners": {"parse": runner}, "stages": {"parse": {}}}
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, document))
    message = str(error.value)
    where = "runner.name" if key == "runner" else "stage_runners.parse.name"
    assert message.startswith(f"{tmp_path / 'run.yaml'}: {where}: DaskRunner is not supported: Beam 2.77's DaskRunner")
    for limitation in ("multi-output ParDos leak", "finish_bundle is lost", "BatchElements drops each bundle's last partial batch",
                       "only the last runs", "Read has no translation", "metrics() is not implemented"):
        assert limitation in message
    assert "PortableRunner with --job_endpoint" in message


def test_portable_runner_needs_a_job_endpoint(tmp_path):
    with pytest.raises(ConfigError, match=r"runner: PortableRunner needs the job server in `options`: --job_endpoint=host:port"):
        load_config(write(tmp_path, {"runner": {"name": "PortableRunner", "options": ["--environment_type=DOCKER"]}}))
    options = ["--job_endpoint=localhost:8099", "--environment_type=EXTERNAL", "--environment_config=localhost:50000"]
    assert load_config(write(tmp_path, {"runner": {"name": "PortableRunner", "options": options}})).runner.options == options
