"""The Bradley-Terry trainer on a tiny random Llama and a real Parquet corpus: learning, drops, exact resume, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from schemas import LANGUAGES, CorpusRow, Origin, arrow_schema, to_row
from storage import shard_name, write_rows
from tests.support.model_fixtures import tiny_causal_lm

MAX_LENGTH = 80
LONG_PROMPT = "Write a function that returns the mean of a list. " * 12
SHARED_BODY = "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n" * 6


def corpus_row(idx: str, system: str, prompt: str, chosen: str, rejected: str) -> dict:
    return to_row(CorpusRow(
        system=system, input=prompt, chosen=chosen, rejected=rejected, language=1, aspect=1, source="test", idx=idx,
        origin=Origin(repo="octo/demo"), license="mit", prompt_origin="instruct", verified=None, verification=None,
        votes_matches=3, votes_contradictions=0, votes_ties=0, votes_errors=0))


def learnable_rows() -> list[dict]:
    """24 pairs whose chosen side is always Python and whose rejected side is always C: a signal a tiny model learns."""
    rows = []
    for i in range(24):
        system = "" if i % 3 else "You review code. Prefer the faster and safer response."
        chosen = f"def mean(xs):\n    return sum(xs) / len(xs) if xs else {i}.0\n"
        rejected = f"for (int i = 0; i < {i}; i++) {{ total += a[i]; }}\n"
        rows.append(corpus_row(f"pair-{i:02d}", system, f"Write a function that returns the mean, case {i}.", chosen, rejected))
    return rows


def unfit_rows() -> list[dict]:
    """One pair per drop reason."""
    return [
        corpus_row("too-long", "", LONG_PROMPT, "def f(): pass\n", "def g(): pass\n"),
        corpus_row("same-after-cut", "", "Write mean.", SHARED_BODY + "# chosen\n", SHARED_BODY + "# rejected\n"),
        corpus_row("same", "", "Write mean.", "def f(): pass\n", "def f(): pass\n"),
    ]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(tiny_causal_lm(tmp_path_factory.mktemp("lm")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A corpus folder in the assemble layout: two real CorpusRow shards."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = learnable_rows() + unfit_rows()
    write_rows(str(folder / shard_name(0, 2)), rows[::2], CorpusRow)
    write_rows(str(folder / shard_name(1, 2)), rows[1::2], CorpusRow)
    return str(folder)


def make_config(tiny_lm, corpus, output_dir, **overrides):
    from pipelines.train import TrainConfig

    values = dict(model=tiny_lm, data=[corpus], output_dir=str(output_dir), max_length=MAX_LENGTH, batch_size=2,
                  gradient_accumulation=2, max_steps=12, learning_rate=3e-3, min_learning_rate=3e-4, lambda_lm=0.1,
                  mu_magnitude=0.01, gradient_checkpointing=False, save_every=4, log_every=1, seed=7,
                  cache_dir=str(output_dir.parent / f"{output_dir.name}-cache"))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def uninterrupted(tiny_lm, corpus, tmp_path_factory):
    """12 optimizer steps in one go (2 epochs of 24 kept pairs at a global batch of 4)."""
    from pipelines.train import train

    return train(make_config(tiny_lm, corpus, tmp_path_factory.mktemp("runs") / "whole"))


def metric_lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def load_reward_model(tiny_lm, checkpoint):
    from safetensors.torch import load_model

    from pipelines.train.model import RewardModel

    model = RewardModel.from_pretrained(tiny_lm)
    load_model(model, f"{checkpoint}/model.safetensors")
    return model.eval()


def test_magnitude_forms_and_loss_on_hand_checked_rewards():
    from pipelines.train.model import MAGNITUDE_PENALTIES, pair_loss

    chosen, rejected = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    # sum_abs: (1 + 0.5)^2 = 2.25, (2 + 1)^2 = 9; centering: (1.5)^2 = 2.25, (-1)^2 = 1
    assert MAGNITUDE_PENALTIES["sum_abs"](chosen, rejected).tolist() == [2.25, 9.0]
    assert MAGNITUDE_PENALTIES["centering"](chosen, rejected).tolist() == [2.25, 1.0]
    loss = pair_loss(chosen, rejected, torch.tensor(2.0), lambda_lm=0.5, mu_magnitude=0.1, magnitude_form="sum_abs")
    bradley_terry = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(3.0))) / 2  # -log sigmoid of margins 0.5 and -3
    assert loss.bradley_terry.item() == pytest.approx(bradley_terry, rel=1e-6)
    assert loss.magnitude.item() == pytest.approx(5.625)
    assert loss.total.item() == pytest.approx(bradley_terry + 0.5 * 2.0 + 0.1 * 5.625, rel=1e-6)
    centred = pair_loss(chosen, rejected, None, lambda_lm=0.5, mu_magnitude=0.1, magnitude_form="centering")
    assert centred.total.item() == pytest.approx(bradley_terry + 0.1 * 1.625, rel=1e-6)


def test_truncation_keeps_the_prompt_and_the_end_of_turn(tiny_lm):
    from transformers import AutoTokenizer

    from pipelines.train.data import EncodedPair, PairEncoder, conversation

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    encoder = PairEncoder(tokenizer, max_length=48)
    system, prompt = "You review code.", "Write mean."
    chosen, rejected = "def mean(xs):\n    return sum(xs) / len(xs)\n" * 4, "total += a[i]\n"
    pair = encoder.encode(system, prompt, chosen, rejected)
    assert isinstance(pair, EncodedPair) and pair.truncated

    prompt_ids = tokenizer.apply_chat_template(conversation(system, prompt), add_generation_prompt=True, return_dict=False)
    full_chosen = tokenizer.apply_chat_template(conversation(system, prompt, chosen), return_dict=False)
    assert pair.chosen_ids[: pair.prompt_length] == pair.rejected_ids[: pair.prompt_length] == list(prompt_ids)
    assert len(full_chosen) > 48 and len(pair.chosen_ids) == 48
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert pair.chosen_ids[-2:] == full_chosen[-2:] and pair.chosen_ids[-2] == im_end  # "<|im_end|>\n" kept
    body = pair.chosen_ids[pair.prompt_length:-2]
    assert body == full_chosen[pair.prompt_length: pair.prompt_length + len(body)]  # the response's beginning
    # The short side is untouched.
    assert pair.rejected_ids == list(tokenizer.apply_chat_template(conversation(system, prompt, rejected), return_dict=False))
    text = tokenizer.decode(pair.chosen_ids)
    assert text.startswith("<|im_start|>system\nYou review code.<|im_end|>\n<|im_start|>user\nWrite mean.")

    no_system = encoder.encode("", prompt, "a = 1\n", "b = 2\n")
    assert not tokenizer.decode(no_system.chosen_ids).startswith("<|im_start|>system")
    assert not no_system.truncated


def test_drop_rules_are_counted_and_listed(uninterrupted):
    assert uninterrupted.pairs_read == 27 and uninterrupted.pairs_kept == 24
    assert uninterrupted.dropped == {"identical_after_truncation": 1, "identical_responses": 1, "prompt_too_long": 1}
    listed = {d["idx"]: d["reason"] for d in metric_lines(uninterrupted.dropped_file)}
    assert listed == {"too-long": "prompt_too_long", "same-after-cut": "identical_after_truncation", "same": "identical_responses"}
    start = metric_lines(uninterrupted.metrics_file)[0]
    assert start["event"] == "start" and start["dropped"] == uninterrupted.dropped and start["pairs_kept"] == 24


def test_loss_falls_and_parameters_change(tiny_lm, uninterrupted):
    from transformers import AutoModelForCausalLM

    assert uninterrupted.completed and uninterrupted.steps == uninterrupted.total_steps == 12
    steps = [line for line in metric_lines(uninterrupted.metrics_file) if line["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, 13))
    assert {"loss", "bt_loss", "lm_loss", "magnitude", "accuracy", "margin", "reward_mean", "reward_std", "lr"} <= set(steps[0])
    first, last = steps[:3], steps[-3:]
    assert sum(s["bt_loss"] for s in last) < sum(s["bt_loss"] for s in first) - 0.05
    assert sum(s["loss"] for s in last) < sum(s["loss"] for s in first)
    assert last[-1]["accuracy"] == 1.0 and last[-1]["margin"] > 0
    assert uninterrupted.final_metrics == {k: v for k, v in steps[-1].items() if k not in ("event", "step", "epoch")}

    base = AutoModelForCausalLM.from_pretrained(tiny_lm).model.state_dict()
    trained = load_reward_model(tiny_lm, uninterrupted.checkpoint)
    assert uninterrupted.checkpoint.endswith("checkpoint-12")
    changed = [k for k, v in trained.lm.model.state_dict().items() if not torch.equal(v, base[k])]
    assert len(changed) == len(base)
    assert trained.head.weight.abs().sum() > 0


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tiny_lm, corpus, uninterrupted, tmp_path, capsys):
    from safetensors.torch import load_file

    from pipelines.train import train
    from pipelines.train.__main__ import main

    first = train(make_config(tiny_lm, corpus, tmp_path / "run", stop_after_steps=5))
    assert not first.completed and first.steps == 5 and first.model_dir is None
    assert first.checkpoint.endswith("checkpoint-5") and (tmp_path / "run" / "checkpoint-4").is_dir()

    # The second half through the module's command line, as a relaunched job would run it.
    config = make_config(tiny_lm, corpus, tmp_path / "run", resume=True)
    (tmp_path / "train.json").write_text(config.model_dump_json())  # JSON is YAML
    main(["--config", str(tmp_path / "train.json")])
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["completed"] and resumed["steps"] == 12 and resumed["resumed_from"].endswith("checkpoint-5")

    whole = load_file(f"{uninterrupted.checkpoint}/model.safetensors")
    parts = load_file(f"{resumed['checkpoint']}/model.safetensors")
    assert whole.keys() == parts.keys()
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=0, atol=1e-6, msg=key)
    later = {s["step"]: s for s in metric_lines(resumed["metrics_file"]) if s["event"] == "step" and s["step"] > 5}
    reference = {s["step"]: s for s in metric_lines(uninterrupted.metrics_file) if s["event"] == "step"}
    assert sorted(later) == list(range(6, 13))  # every step after the checkpoint, compared below
    for step, line in later.items():
        assert line["loss"] == pytest.approx(reference[step]["loss"], abs=1e-6)
        assert line["lr"] == pytest.approx(reference[step]["lr"])


def test_resume_refuses_a_changed_run(tiny_lm, corpus, uninterrupted):
    from pipelines.train import train

    config = make_config(tiny_lm, corpus, Path(uninterrupted.output_dir + "-other"), resume=uninterrupted.checkpoint, seed=8)
    with pytest.raises(ValueError, match="order_seed=7"):
        train(config)


def test_exported_model_scores_like_the_trainer(tiny_lm, uninterrupted):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.train.data import PairEncoder, collate

    exported = AutoModelForSequenceClassification.from_pretrained(uninterrupted.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(uninterrupted.model_dir)
    assert exported.config.num_labels == 1 and exported.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.chat_template

    encoder = PairEncoder(tokenizer, MAX_LENGTH)
    pair = encoder.encode("", "Write a function that returns the mean.", "def mean(xs):\n    return sum(xs) / len(xs)\n",
                          "for (int i = 0; i < n; i++) { total += a[i]; }\n")
    batch = collate({"chosen_ids": [pair.chosen_ids], "rejected_ids": [pair.rejected_ids],
                     "prompt_length": [pair.prompt_length]}, encoder.pad_id)  # right-padded: the sides differ in length
    trainer_model = load_reward_model(tiny_lm, uninterrupted.checkpoint)
    with torch.no_grad():
        expected = trainer_model(batch.input_ids, batch.attention_mask).rewards
        scored = exported(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
        single = exported(input_ids=torch.tensor([pair.chosen_ids])).logits[0, 0]
    torch.testing.assert_close(scored, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single, expected[0], rtol=1e-5, atol=1e-5)
    assert expected[0] > expected[1]  # it learned the signal


def test_config_is_typed(tiny_lm, corpus, tmp_path):
    from pipelines.train import TrainConfig

    with pytest.raises(ValidationError, match="learning_rte"):
        TrainConfig(model=tiny_lm, data=corpus, output_dir=str(tmp_path), learning_rte=1e-5)
    config = TrainConfig(model=tiny_lm, data=corpus, output_dir=str(tmp_path))
    assert config.data == [corpus] and config.learning_rate == 1e-5 and config.adam_betas == (0.9, 0.95)
    assert all(field.description for field in TrainConfig.model_fields.values())


def assembled_run(corpus, run_dir: Path) -> Path:
    """A run directory holding an assemble stage (fixture): the corpus shards and two held-out benchmark pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from storage import StageManifest

    assembled = run_dir / "assemble"
    assembled.mkdir(parents=True)
    for part in sorted(Path(corpus).glob("*.parquet")):
        (assembled / part.name).write_bytes(part.read_bytes())
    StageManifest(stage="assemble", config_hash="fixture", schema="CorpusRow v2", records_in=24, records_out=24, dropped={},
                  started="", finished="", seconds=0.0, files=[p.name for p in assembled.glob("*.parquet")], versions={},
                  config={}).write(str(assembled))
    (assembled / "holdout").mkdir()
    bench = assembled / "holdout" / "part-00000-of-00001.parquet"  # where assemble writes the pairs it holds out
    pq.write_table(pa.table({"prompt": ["Write the mean."] * 2, "chosen": ["def mean(xs):\n    return sum(xs) / len(xs)\n"] * 2,
                             "rejected": ["int mean(int *xs) { return 0; }\n"] * 2, "language": ["Python", "Cpp"],
                             "aspect": ["Runtime_Efficiency"] * 2, "subset": ["s"] * 2, "id": ["a", "b"]}), bench)
    return assembled


def test_train_and_eval_stages_in_a_run_and_the_cli(tiny_lm, corpus, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.config import RunConfig, import_builtin_stages
    from pipelines.run.orchestrator import run

    import_builtin_stages()
    run_dir = tmp_path / "run"
    assembled = assembled_run(corpus, run_dir)
    train_options = {"model": tiny_lm, "max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "max_length": 256,
                     "gradient_checkpointing": False, "save_every": 0, "learning_rate": 1e-3, "cache_dir": str(tmp_path / "cache")}
    config = RunConfig(run_dir=str(run_dir), stages={"train": train_options,
                                                     "eval": {"device": "cpu", "max_length": 256}})
    trained, evaluated = run(config)
    manifest = trained.manifest
    assert trained.stage == "train" and manifest.counters["steps"] == 2 and manifest.records_in == 27
    assert manifest.records_out + sum(manifest.dropped.values()) == 27 and manifest.dropped  # the unfit pairs, counted
    assert (run_dir / "train" / "model" / "config.json").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert results["overall"]["total_examples"] == 2
    assert [(outcome.stage, outcome.skipped) for outcome in run(config)] == [("train", True), ("eval", True)]  # nothing redone

    result = CliRunner().invoke(app, ["train", "--model", tiny_lm, "--data", str(assembled), "--out", str(tmp_path / "cli"),
                                      "--max-steps", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "1/1 steps" in result.output and (tmp_path / "cli" / "model" / "config.json").is_file()


def _memfs_text(url: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(url) as handle:
        return handle.read().decode("utf-8")


def _scores(url: str) -> list[dict]:
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(url) as handle:
        return pq.read_table(handle).to_pylist()


def test_train_and_eval_on_an_object_store_run_dir_match_a_local_run_and_resume(tiny_lm, corpus, tmp_path, monkeypatch):
    """run_dir on memfs:// (an object store only Beam's FileSystems reach): train stages its files through a local
    folder, eval reads the model and the held-out pairs through FileSystems; the results equal a local run's. A
    failed attempt leaves its newest checkpoint up there, and the rerun resumes from it."""
    from pipelines.run.config import RunConfig, import_builtin_stages
    from pipelines.run.orchestrator import run
    from pipelines.train import trainer
    from tests.support.memory_fs import SCHEME, copy_into

    import_builtin_stages()
    monkeypatch.chdir(tmp_path)  # a store path taken for a local one would land here, as memfs:/...
    stages = {"train": {"model": tiny_lm, "max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "max_length": 256,
                        "gradient_checkpointing": False, "save_every": 1, "learning_rate": 1e-3, "cache_dir": str(tmp_path / "cache")},
              "eval": {"device": "cpu", "max_length": 256}}
    local_dir = tmp_path / "local"
    assembled_run(corpus, local_dir)
    run(RunConfig(run_dir=str(local_dir), stages=stages))

    store = f"{SCHEME}://{tmp_path.name}/run"
    copy_into(assembled_run(corpus, tmp_path / "staged"), f"{store}/assemble")
    whole = trainer.train

    def killed_after_one_step(config):
        whole(config.model_copy(update={"stop_after_steps": 1}))
        raise RuntimeError("killed after step 1")

    monkeypatch.setattr(trainer, "train", killed_after_one_step)
    with pytest.raises(RuntimeError, match="killed after step 1"):
        run(RunConfig(run_dir=store, stages=stages))
    assert json.loads(_memfs_text(f"{store}/train/checkpoint-1/trainer_state.json"))["step"] == 1
    monkeypatch.setattr(trainer, "train", whole)
    _, evaluated = run(RunConfig(run_dir=store, stages=stages))

    result = json.loads(_memfs_text(f"{store}/train/train_result.json"))
    assert result["completed"] and result["steps"] == 2 and result["resumed_from"].endswith("checkpoint-1")
    assert not Path(f"{SCHEME}:").exists()  # nothing written to a local path named like the store
    assert _memfs_text(f"{store}/train/model/config.json") and _memfs_text(f"{store}/train/metrics.jsonl")
    local_results = json.loads((local_dir / "eval" / "results.json").read_text())
    store_results = json.loads(_memfs_text(f"{store}/eval/results.json"))
    assert store_results["overall"]["total_examples"] == 2
    # the store's paths are recorded, not the local copies scored
    assert (store_results["run"].pop("model"), store_results["run"].pop("benchmark")) == (f"{store}/train/model",
                                                                                           f"{store}/assemble/holdout")
    assert (local_results["run"].pop("model"), local_results["run"].pop("benchmark")) == (str(local_dir / "train" / "model"),
                                                                                           str(local_dir / "assemble" / "holdout"))
    assert {k: v for k, v in store_results.items() if k != "source"} == {k: v for k, v in local_results.items() if k != "source"}
    local_scores = _scores(str(local_dir / "eval" / "scores.parquet"))
    assert _scores(f"{store}/eval/scores.parquet") == local_scores
    assert evaluated.manifest.counters == json.loads((local_dir / "eval" / "_manifest.json").read_text())["counters"]


def test_train_reads_corpora_whose_language_vocabularies_grew_with_their_registries(tiny_lm, corpus, tmp_path):
    """A corpus whose `language` names end in Rust (index 9, past the published nine), alone and after a published one:
    `datasets` would cast every file to the first file's ClassLabel names and refuse index 9; train reads no ClassLabel."""
    from pipelines.train import train

    grown = arrow_schema(CorpusRow, {"language": (*LANGUAGES.names, "Rust")})
    rust = tmp_path / "rust-corpus"
    rust.mkdir()
    rows = [{**row, "language": 9, "idx": f"rs-{row['idx']}"} for row in learnable_rows()[:8]]
    write_rows(str(rust / shard_name(0, 2)), rows, CorpusRow, grown)
    write_rows(str(rust / shard_name(1, 2)), [], CorpusRow, grown)  # an empty shard, as fill_empty_shards writes it
    options = {"max_steps": 2, "gradient_accumulation": 1, "save_every": 0}
    alone = train(make_config(tiny_lm, str(rust), tmp_path / "alone", **options))
    assert alone.pairs_read == 8 and alone.pairs_kept == 8
    mixed = train(make_config(tiny_lm, corpus, tmp_path / "mixed", data=[corpus, str(rust)], **options))
    assert mixed.pairs_read == 27 + 8 and mixed.pairs_kept == 24 + 8
