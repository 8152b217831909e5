"""The run skeleton: stages into RUN_DIR/<stage>/part-*.parquet with manifests, skip on rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.run.config import ConfigError, RunConfig, check_stages, load_config
from pipelines.run.orchestrator import StageOrderError, run, stage_order
from schemas import Commit, Drop
from storage import MANIFEST_NAME, StageManifest, read_rows
from tests.support.inputs import commit_row, write_config

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def commits_file(tmp_path) -> Path:
    lines = [json.dumps(commit_row(i, "fix" if i % 5 == 0 else f"Fix the off-by-one in loop {i}")) for i in range(40)]
    lines.insert(7, "{not json")
    lines.insert(20, json.dumps({"repo": "octo/demo"}))  # missing columns
    path = tmp_path / "commits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stages_write_shards_manifests_and_drops(tmp_path, commits_file):
    config = load_config(write_config(tmp_path, commits_file))
    assert stage_order(config) == ["sample_source", "sample_filter"]
    outcomes = run(config)
    assert [(o.stage, o.skipped) for o in outcomes] == [("sample_source", False), ("sample_filter", False)]

    source = StageManifest.read(str(tmp_path / "run" / "sample_source"))
    assert (source.records_in, source.records_out, source.dropped) == (42, 40, {"malformed_row": 2})
    flt = StageManifest.read(str(tmp_path / "run" / "sample_filter"))
    assert (flt.records_in, flt.records_out, flt.dropped) == (40, 32, {"short_message": 8})
    assert flt.inputs == {"sample_source": source.config_hash}
    assert flt.config == {"inputs": ["sample_source"], "min_message": 10, "stall_once": ""}
    assert {"apache-beam", "pyarrow", "tree-sitter", "python"} <= set(flt.versions)
    assert flt.started <= flt.finished

    stage_dir = tmp_path / "run" / "sample_filter"
    parts = sorted(p.name for p in stage_dir.glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}-of-00003.parquet" for i in range(3)]  # empty shards too
    assert sorted(f for f in flt.files if not f.startswith("_dropped/")) == parts
    assert not (stage_dir / "_attempt").exists()
    rows = list(read_rows(str(stage_dir), Commit))
    assert len(rows) == 32 and len({r["commit"] for r in rows}) == 32
    drops = list(read_rows(str(stage_dir / "_dropped"), Drop))
    assert {d["reason"] for d in drops} == {"short_message"} and len(drops) == 8
    assert all(json.loads(d["record"])["message"] == "fix" for d in drops)


def test_rerun_skips_matching_stages_and_redoes_changed_ones(tmp_path, commits_file):
    run(load_config(write_config(tmp_path, commits_file)))
    manifest_before = (tmp_path / "run" / "sample_source" / MANIFEST_NAME).read_text()

    again = run(load_config(write_config(tmp_path, commits_file)))
    assert [o.skipped for o in again] == [True, True]
    assert (tmp_path / "run" / "sample_source" / MANIFEST_NAME).read_text() == manifest_before

    changed = run(load_config(write_config(tmp_path, commits_file, min_message=3)))
    assert [(o.stage, o.skipped) for o in changed] == [("sample_source", True), ("sample_filter", False)]
    assert changed[1].manifest.records_out == 40 and changed[1].manifest.dropped == {}


def test_a_stage_whose_files_vanished_is_redone(tmp_path, commits_file):
    run(load_config(write_config(tmp_path, commits_file)))
    next((tmp_path / "run" / "sample_filter").glob("part-*.parquet")).unlink()
    outcomes = run(load_config(write_config(tmp_path, commits_file)))
    assert [o.skipped for o in outcomes] == [True, False]
    assert len(list(read_rows(str(tmp_path / "run" / "sample_filter"), Commit))) == 32


def test_a_crashed_stage_leaves_no_manifest_and_the_next_run_finishes_cleanly(tmp_path, commits_file):
    crashing = load_config(write_config(tmp_path, commits_file, fail_on=f"{13:040x}"))
    with pytest.raises(Exception, match="simulated crash"):
        run(crashing)
    assert not (tmp_path / "run" / "sample_source" / MANIFEST_NAME).exists()
    outcomes = run(load_config(write_config(tmp_path, commits_file)))
    assert [o.skipped for o in outcomes] == [False, False]
    rows = list(read_rows(str(tmp_path / "run" / "sample_source"), Commit))
    assert len(rows) == 40 and len({r["commit"] for r in rows}) == 40
    assert not (tmp_path / "run" / "sample_source" / "_attempt").exists()


def test_multi_processing_runner_gives_the_same_shards(tmp_path, commits_file):
    run(load_config(write_config(tmp_path, commits_file, run_dir=tmp_path / "one")))
    run(load_config(write_config(tmp_path, commits_file, run_dir=tmp_path / "two", mode="multi_processing", workers=2)))
    for stage in ("sample_source", "sample_filter"):
        one = sorted((tmp_path / "one" / stage).glob("part-*.parquet"))
        two = sorted((tmp_path / "two" / stage).glob("part-*.parquet"))
        assert [p.name for p in one] == [p.name for p in two] and one
        for a, b in zip(one, two):
            assert list(read_rows_of(a)) == list(read_rows_of(b))


def test_local_worker_processes_print_no_start_and_stop_lines(tmp_path, commits_file, capfd):
    run(load_config(write_config(tmp_path, commits_file, mode="multi_processing", workers=2)))
    printed = capfd.readouterr().err
    assert "sdk harness starting" not in printed.lower() and "Done consuming work" not in printed
    assert "semi_persistent_directory" not in printed


def read_rows_of(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_selected_stage_needs_its_inputs_done(tmp_path, commits_file):
    config = load_config(write_config(tmp_path, commits_file))
    with pytest.raises(StageOrderError, match="reads 'sample_source', which has no finished output"):
        run(config, selected=["sample_filter"])
    assert [o.stage for o in run(config, selected=["sample_source"])] == ["sample_source"]
    assert [o.stage for o in run(config, selected=["sample_filter"])] == ["sample_filter"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["stages"]["sample_filter"].update(min_mesage=3), r"stages\.sample_filter\.min_mesage: Extra inputs"),
        (lambda c: c["stages"]["sample_filter"].update(min_message="many"), r"stages\.sample_filter\.min_message"),
        (lambda c: c["stages"].update(nosuch={}), r"stages\.nosuch: unknown stage; known: .*sample_source"),
        (lambda c: c["runner"].update(running_mode="fast"), r"runner\.running_mode"),
        (lambda c: c.update(num_shard=2), r"num_shard: Extra inputs"),
        (lambda c: c.update(plugins=["no.such.module"]), r"plugins: cannot import 'no\.such\.module'"),
    ],
)
def test_config_errors_name_the_key(tmp_path, commits_file, edit, message):
    path = write_config(tmp_path, commits_file)
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_cli_run_then_rerun_is_a_no_op(tmp_path, commits_file):
    path = write_config(tmp_path, commits_file)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pipelines.cli", "run", str(path)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "done sample_source: 42 in, 40 out, dropped: malformed_row 2" in first.stdout
    assert "done sample_filter: 40 in, 32 out, dropped: short_message 8" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "skip sample_source" in second.stdout and "skip sample_filter" in second.stdout
    bad = subprocess.run([*command[:-1], str(tmp_path / "missing.yaml")], capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "missing.yaml: no such config file" in bad.stderr


def test_a_run_killed_mid_stage_resumes_without_redoing_or_duplicating(tmp_path, commits_file):
    """SIGKILL the whole `codepref run` (driver and its worker processes) while the second stage runs;
    the same command again keeps the first stage, redoes the second from scratch, and every row is there once."""
    import signal
    import time

    marker = tmp_path / "stalled"
    path = write_config(tmp_path, commits_file, mode="multi_processing", workers=2, stall_once=str(marker))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pipelines.cli", "run", str(path)]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 240
    while not marker.exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), killed.communicate()[0]
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    run_dir = tmp_path / "run"
    source = StageManifest.read(str(run_dir / "sample_source"))
    assert source is not None and StageManifest.read(str(run_dir / "sample_filter")) is None  # half a stage is not done

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "skip sample_source" in resumed.stdout and "done sample_filter: 40 in, 32 out" in resumed.stdout
    assert StageManifest.read(str(run_dir / "sample_source")).finished == source.finished  # not redone
    rows = [row["commit"] for row in read_rows(str(run_dir / "sample_filter"), Commit)]
    assert len(rows) == len(set(rows)) == 32
    assert not (run_dir / "sample_filter" / "_attempt").exists()


def test_the_package_builds_as_beam_stages_it_for_remote_workers(tmp_path):
    """Dataflow, Flink and Spark workers get codepref from `--setup_file pyproject.toml`: Beam builds an
    sdist offline (`python -m build --no-isolation --sdist`); it must hold the code and its data files."""
    import tarfile

    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(str(REPO / "pyproject.toml"), str(tmp_path))
    names = tarfile.open(sdist).getnames()
    for wanted in ("pipelines/run/orchestrator.py", "parsers/languages.yaml", "pipelines/assemble/templates/system_prompt.v1.j2",
                   "pipelines/synthesize/aspect_terms/runtime_efficiency.txt", "schemas/records.py", "storage/parquet.py"):
        assert any(name.endswith(wanted) for name in names), wanted


def test_stages_that_keep_local_files_refuse_an_object_store_run_dir(monkeypatch):
    from pipelines.core import STAGES
    from pipelines.run.config import import_builtin_stages

    import_builtin_stages()
    # The LLM answer caches are files written through FileSystems, and train and eval stage their files through
    # them: every built-in stage takes an object store.
    for stage in ({"label": {}}, {"synthesize": {"inputs": [], "instruct": [{"name": "human-eval"}], "llm": {}}},
                  {"train": {"model": "m"}, "eval": {}}):
        check_stages(RunConfig(run_dir="s3://bucket/run", stages=stage))
    monkeypatch.setattr(STAGES["train"], "local_files", classmethod(lambda cls, config: "a program's working files (checkpoints)"))
    config = RunConfig(run_dir="gs://bucket/run", stages={"train": {"model": "m"}})
    with pytest.raises(ConfigError, match=r"stage 'train' keeps a program's working files .* run_dir is 'gs://bucket/run'"):
        run(config)


def test_a_stage_can_have_its_own_runner(tmp_path, commits_file, monkeypatch):
    import pipelines.run.orchestrator as run_module

    path = write_config(tmp_path, commits_file, mode="multi_processing", workers=2)
    document = yaml.safe_load(path.read_text())
    document["stage_runners"] = {"sample_filter": {"running_mode": "in_memory", "workers": 1}}
    path.write_text(yaml.safe_dump(document))
    used = {}
    original = run_module.pipeline_for
    monkeypatch.setattr(run_module, "pipeline_for", lambda runner, label: used.setdefault(label, runner) and original(runner, label))
    run(load_config(path))
    assert used["codepref-sample_source"].running_mode == "multi_processing"
    assert used["codepref-sample_filter"].running_mode == "in_memory"
    document["stage_runners"] = {"nope": {}}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="stage_runners.nope: not a configured stage"):
        load_config(path)


def test_the_demo_config_is_valid():
    config = load_config(REPO / "configs" / "demo.yaml")
    assert stage_order(config) == ["mine", "synthesize", "parse", "dedup", "label", "assemble", "train", "eval"]
    assert config.stage_config("synthesize").instruct[0].name == "human-eval"
    assert config.stage_config("assemble").holdout > 0 and config.stage_config("eval").benchmark is None


def test_the_published_recipe_preset_is_valid():
    config = load_config(REPO / "configs" / "themis-codepreference.yaml")
    assert stage_order(config) == ["mine", "synthesize", "external", "parse", "dedup", "label", "assemble", "train", "eval"]
    label = config.stage_config("label")
    assert (label.votes, label.min_matches, label.max_contradictions) == (8, 6, 1)
    assert sum(source.cap for source in config.stage_config("external").sources) == 172_455  # the nine sets' published counts
    assert config.stage_config("assemble").system_prompts.criterion == 0.60


def test_the_reference_config_is_current_and_every_default_validates():
    from pipelines.core import STAGES
    from pipelines.run.config import REQUIRED, reference_yaml

    text = reference_yaml()
    assert (REPO / "configs" / "reference.yaml").read_text() == text, "regenerate: codepref config init --out configs/reference.yaml"
    document = yaml.safe_load(text)
    assert RunConfig.model_validate({**document, "stages": {}}) == RunConfig()
    for name, values in document["stages"].items():
        filled = {key: value for key, value in values.items() if value != REQUIRED}
        required = {key for key, field in STAGES[name].Config.model_fields.items() if field.is_required()}
        assert set(values) - set(filled) == required  # exactly the required keys are marked
        if required:
            continue
        assert STAGES[name].Config.model_validate(filled) == STAGES[name].Config(), name
    assert "# Votes per judge and pair, half in each order (must be even).\n    votes: 8" in text


def test_config_cli_init_and_check(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    out = tmp_path / "c.yaml"
    assert runner.invoke(app, ["config", "init", "--stages", "mine,parse", "--out", str(out)]).exit_code == 0
    document = yaml.safe_load(out.read_text())
    assert list(document["stages"]) == ["mine", "parse"]
    document["stages"]["mine"]["repos"] = [str(REPO)]
    out.write_text(yaml.safe_dump(document))
    checked = runner.invoke(app, ["config", "check", str(out), "--show"])
    assert checked.exit_code == 0, checked.output
    assert "valid; stages in run order: mine, parse" in checked.output and "max_error_share" in checked.output
    document["stages"]["parse"]["min_depht"] = 2
    out.write_text(yaml.safe_dump(document))
    bad = runner.invoke(app, ["config", "check", str(out)])
    assert bad.exit_code == 2 and "stages.parse.min_depht: Extra inputs are not permitted" in bad.output


def test_from_and_to_select_a_range_in_run_order(tmp_path, commits_file):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.orchestrator import stage_range

    path = write_config(tmp_path, commits_file)
    config = load_config(path)
    assert stage_range(config, None, "sample_source") == ["sample_source"]
    assert stage_range(config, "sample_filter", None) == ["sample_filter"]
    assert stage_range(config, None, None) == ["sample_source", "sample_filter"]
    with pytest.raises(ConfigError, match="comes after"):
        stage_range(config, "sample_filter", "sample_source")
    with pytest.raises(ConfigError, match="'nope' is not in the config"):
        stage_range(config, "nope", None)
    result = CliRunner().invoke(app, ["run", str(path), "--to", "sample_source"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "sample_source" / MANIFEST_NAME).is_file() and not (tmp_path / "run" / "sample_filter").exists()
    assert "sample_source" in result.output and "done" in result.output  # the summary table
    result = CliRunner().invoke(app, ["run", str(path), "--from", "sample_source"])
    assert result.exit_code == 0 and "skipped" in result.output and (tmp_path / "run" / "sample_filter" / MANIFEST_NAME).is_file()
