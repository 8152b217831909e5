"""The `external` stage: each public set's adapter on a small copy in the set's public layout, run
through a real Beam pipeline; caps and shares chosen by pair-id hash, the same for any shard count."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipelines.external  # noqa: F401  (registers the stage until it is a built-in)
from parsers import languages
from pipelines.external.adapters import ADAPTERS, AdapterSettings
from pipelines.external.adapters.base import extract_code, html_to_text, stable_rank
from pipelines.external.stage import External, mix_quotas
from pipelines.run.config import ConfigError, RunConfig
from storage import StageManifest
from tests.support.stage_run import run_one_stage


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_lines(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# --- one small copy per set, in its public layout (see each adapter's docstring) --------------------

CODENET_COLUMNS = ("s_id", "p_id", "u_id", "date", "language", "original_language", "filename_ext", "status",
                   "cpu_time", "memory", "code_size", "code")


def codenet_row(s_id, p_id, u_id, language, status, cpu_time, memory, code):
    values = (s_id, p_id, u_id, "1600000000", language, f"{language} (judge)", ".x", status, cpu_time, memory,
              str(len(code or "")), code)
    return dict(zip(CODENET_COLUMNS, values, strict=True))


def codenet(root: Path) -> dict:
    schema = pa.schema([(c, pa.string()) for c in CODENET_COLUMNS])  # every column a string, as on the card
    write_parquet(root / "codenet" / "Python" / "train-00000-of-00001.parquet", [
        codenet_row("s001", "p00001", "u1", "Python", "Accepted", "100", "9000", "print(sum(int(x) for x in input().split()))\n"),
        codenet_row("s002", "p00001", "u1", "Python", "Accepted", "10", "9100", "a, b = map(int, input().split())\nprint(a + b)\n"),
        codenet_row("s003", "p00001", "u1", "Python", "Wrong Answer", "10", "9000", "print(0)\n"),
        codenet_row("s004", "p00001", "u2", "Python", "Accepted", "50", "2000", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"),
        codenet_row("s005", "p00001", "u2", "Python", "Accepted", "40", "12000", "xs = [int(x) for x in input().split()] * 1000\nprint(xs[0] + xs[1])\n"),
        codenet_row("s006", "p00002", "u3", "Python", "Accepted", "abc", "100", "print(1)\n"),  # malformed measurement
        codenet_row("s007", "p00002", "u4", "Python", "Accepted", "20", "100", None),  # malformed: no code
        codenet_row("s008", "p00002", "u5", "Python", "Accepted", "20", "100", "print(2)\n"),
    ], schema)
    write_parquet(root / "codenet" / "C++" / "train-00000-of-00001.parquet", [
        codenet_row("s101", "p00003", "u9", "C++", "Accepted", "5", "3000", "#include <cstdio>\nint main(){int a,b;scanf(\"%d%d\",&a,&b);printf(\"%d\\n\",a+b);}\n"),
        codenet_row("s102", "p00003", "u9", "C++", "Accepted", "300", "3100", "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;for(int i=0;i<1e8;i++);std::cout<<a+b;}\n"),
        codenet_row("s103", "p00003", "u9", "Rust", "Accepted", "5", "3000", "fn main() {}\n"),
    ], schema)
    problems = write_lines(root / "codenet_problems.jsonl", [
        {"problem_id": "p00001", "problem_description": "<p>Print the sum of <var>A</var> and <var>B</var>.</p>"},
    ])
    return {"name": "codenet", "path": str(root / "codenet"), "problems": {"path": str(problems)}}


def venus(root: Path) -> dict:
    solution = lambda measure: pa.list_(pa.struct([("code", pa.string()), (measure, pa.string())]))  # noqa: E731
    schema = pa.schema([("question_id", pa.int64()), ("name", pa.string()), ("content", pa.string()),
                        ("rt_list", solution("runtime")), ("mm_list", solution("memory"))])
    a, b, c = ("class Solution:\n    def total(self, nums):\n        return sum(nums)\n",
               "class Solution:\n    def total(self, nums):\n        t = 0\n        for i in range(len(nums)):\n            t = t + sum(nums[i:i + 1])\n        return t\n",
               "class Solution:\n    def total(self, nums):\n        import math\n        return math.fsum(nums)\n")
    d, e = "class Solution:\n    def twice(self, n):\n        return 2 * n\n", "class Solution:\n    def twice(self, n):\n        return len([0] * n * 2)\n"
    write_parquet(root / "venus" / "python3" / "train-00000-of-00001.parquet", [
        {"question_id": 1, "name": "total", "content": "<p>Given an array <code>nums</code>, return its sum.</p>\n<pre>Input: nums = [1,2]\nOutput: 3</pre>",
         "rt_list": [{"code": a, "runtime": "40"}, {"code": b, "runtime": "400"}, {"code": c, "runtime": "45"}],
         "mm_list": [{"code": a, "memory": "16000"}, {"code": b, "memory": "17000"}]},
        {"question_id": 2, "name": "twice", "content": "<p>Return twice <code>n</code>.</p>",
         "rt_list": [{"code": d, "runtime": "30"}], "mm_list": [{"code": d, "memory": "2000"}, {"code": e, "memory": "11000"}]},
        {"question_id": 3, "name": "broken", "content": None, "rt_list": [], "mm_list": []},  # malformed: no statement
    ], schema)
    return {"name": "venus", "path": str(root / "venus" / "python3"), "language": "python3"}


def ecco(root: Path) -> dict:
    write_parquet(root / "ecco" / "edit" / "train-00000-of-00001.parquet", [
        {"problem_id": "p00010", "input": "n = int(input())\ns = 0\nfor x in range(n):\n    s += x\nprint(s)\n",
         "target": "n = int(input())\nprint(n * (n - 1) // 2)\n"},
        {"problem_id": "p00011", "input": "print(input())\n", "target": "print(input())\n"},
        {"problem_id": "p00012", "input": "print(1)\n", "target": None},  # malformed: no faster program
    ])
    problems = write_parquet(root / "ecco" / "generate" / "train-00000-of-00001.parquet", [
        {"problem_id": "p00010", "problem_description": "Given n, print the sum of the integers below n."},
    ])
    return {"name": "ecco", "path": str(root / "ecco" / "edit"), "problems": {"path": str(problems)}}


def pie4perf(root: Path) -> dict:
    def row(v0, v1, slow_time, fast_time):
        return {"user_id": "u1", "problem_id": "p00020", "language": "C++", "submission_id_v0": v0, "submission_id_v1": v1,
                "cpu_time_v0": slow_time, "cpu_time_v1": fast_time, "memory_v0": 3000, "memory_v1": 3000,
                "status_v0": "Accepted", "status_v1": "Accepted", "improvement_frac": 90.0,
                "input": f"#include <cstdio>\nint main(){{/* {v0} */long s=0;for(long i=0;i<1e9;i++)s+=i%2;printf(\"%ld\",s);}}\n",
                "target": f"#include <cstdio>\nint main(){{/* {v1} */printf(\"%ld\",500000000L);}}\n"}

    return {"name": "pie4perf", "path": str(write_lines(root / "pie" / "train.jsonl", [
        row("s_a", "s_b", 1000, 100), row("s_c", "s_d", 150, 100), "{not json"]))}


def runbugrun(root: Path) -> dict:
    import datasets

    rows = [("python", 11, 12, "a, b = map(int, input().split())\nprint(a - b)\n", "a, b = map(int, input().split())\nprint(a + b)\n"),
            ("cpp", 21, 22, "int main(){return 1;}\n", "int main(){return 0;}\n"),
            ("php", 31, 32, "<?php echo 1;\n", "<?php echo 2;\n"),
            ("python", 41, 42, "print(1)\n", "print(1)\n"),
            ("python", 51, 52, "print(3)\n", None)]  # malformed: no fixed program
    table = {"problem_id": [], "buggy_code": [], "fixed_code": [], "labels": [], "buggy_submission_id": [],
             "fixed_submission_id": [], "user_id": [], "language": []}
    for language, buggy_id, fixed_id, buggy, fixed in rows:
        for column, value in (("problem_id", "p00030"), ("buggy_code", buggy), ("fixed_code", fixed), ("labels", ["op.change"]),
                              ("buggy_submission_id", buggy_id), ("fixed_submission_id", fixed_id), ("user_id", "u7"),
                              ("language", language)):
            table[column].append(value)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(table)}).save_to_disk(str(root / "runbugrun"))
    return {"name": "runbugrun", "path": str(root / "runbugrun"), "split": "train", "languages": ["python"]}


def prosec(root: Path, count: int | None = None) -> dict:
    def row(lang, n, benign=False, instruction="Write a function that runs the user's shell command {n}."):
        return {"lang": lang, "cwe": "CWE-78", "original_instruction": instruction.format(n=n) if instruction else None,
                "original_code": f"import os\ndef run(cmd):\n    os.system(cmd + ' {n}')\n",
                "fixed_code": f"import subprocess\ndef run(cmd):\n    subprocess.run([cmd, '{n}'], check=True)\n", "benign": benign, "empty": ""}

    if count is not None:  # the mix test: many good rows
        rows = [row("python", n) for n in range(count)]
    else:
        rows = [row("python", 1), row("c", 2), row("cpp", 3), row("python", 4, benign=True), row("rust", 5),
                row("python", 6, instruction=None)]  # malformed: no instruction
    path = write_parquet(root / f"prosec{count or ''}" / "train-00000-of-00001.parquet", rows)
    return {"name": "prosec", "path": str(path)}


def cybernative(root: Path, count: int | None = None) -> dict:
    def row(lang, fence, n):
        return {"lang": lang, "vulnerability": "Buffer overflow when copying input.", "system": "",
                "question": f"Write a {lang} function that copies a user-supplied string (case {n}).",
                "chosen": f"Here is a safe version:\n```{fence}\nsafe_copy_{n}(dst, src, sizeof dst);\n```\nIt bounds the copy.",
                "rejected": f"```{fence}\nunsafe_copy_{n}(dst, src);\n```"}

    rows = [row("python", "python", n) for n in range(count)] if count is not None else \
        [row("c++", "cpp", 1), row("python", "python", 2), row("c#", "csharp", 3), row("php", "php", 4), 3]  # 3: malformed
    path = root / f"cybernative{count or ''}" / "secure_programming_dpo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return {"name": "cybernative", "path": str(path)}


def codescaler(root: Path) -> dict:
    question = "Given a list of integers, print the largest."
    return {"name": "codescaler", "columns": {"rejected_pass_rate": "neg_pass_rate"}, "path": str(write_lines(root / "codescaler.jsonl", [
        {"question_content": question, "code_pos": "```python\nprint(max(map(int, input().split())))\n```",
         "code_neg": "```python\nprint(sorted(map(int, input().split()))[-2])\n```", "neg_pass_rate": 0.8},
        {"question_content": question, "code_pos": "print(max(map(int, input().split())))\n", "code_neg": "print(0)\n", "neg_pass_rate": 0.2},
        {"question_content": question, "code_pos": "print(1)\n", "neg_pass_rate": 0.9},  # malformed: no negative
    ]))}


def coder_pile(root: Path) -> dict:
    base = root / "CodeR-Pile"
    write_lines(base / "text2code" / "en" / "web_code_retrieval" / "en-python-triplets.jsonl", [
        {"prompt": "Given a web search query, retrieve relevant code that can help answer the query.",
         "query": "how to reverse a list in python", "pos": ["```python\ndef rev(xs):\n    return xs[::-1]\n```"],
         "neg": ["def rev(xs):\n    return xs\n", "def rev(xs):\n    return sorted(xs)\n"]},
        {"prompt": "Given a web search query, retrieve relevant code that can help answer the query.",
         "query": "sum a list", "pos": ["def total(xs):\n    return sum(xs)\n"], "neg": []},
    ])
    write_lines(base / "code2code" / "en" / "code_refinement_retrieval" / "en-cplusplus-triplets.jsonl", [
        {"prompt": "Given a piece of code, retrieve a refined version of the code.", "query": "int f(int a){return a+0;}",
         "pos": ["int f(int a) { return a; }\n"], "neg": ["int f(int a) { return 0; }\n"]},
    ])
    write_lines(base / "text2code" / "en" / "web_code_retrieval" / "en-php-triplets.jsonl", [
        {"prompt": "Given a web search query, retrieve relevant code.", "query": "echo", "pos": ["<?php echo 1;"], "neg": ["<?php"]},
    ])
    # Not read: a code2text task (its documents are prose) and another natural language.
    write_lines(base / "code2text" / "en" / "code_summary_retrieval" / "en-python-triplets.jsonl", ["{not read"])
    write_lines(base / "text2code" / "zh" / "web_code_retrieval" / "zh-python-triplets.jsonl", ["{not read"])
    return {"name": "coder-pile", "path": str(base)}


@pytest.fixture(scope="module")
def every_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    sources = [codenet(root), venus(root), ecco(root), pie4perf(root), runbugrun(root), prosec(root), cybernative(root),
               codescaler(root), coder_pile(root)]
    return run_one_stage(root / "run", "external", {"sources": sources})  # module-scoped: the runner itself, not its fixture


def of(pairs: dict, name: str) -> dict:
    return {pair_id: pair for pair_id, pair in pairs.items() if pair["source"] == f"external:{name}"}


def dropped(manifest: StageManifest, name: str) -> dict[str, int]:
    prefix = f"{name}.dropped_"
    return {key.removeprefix(prefix): value for key, value in manifest.counters.items() if key.startswith(prefix)}


def test_every_set_has_an_adapter_and_every_candidate_its_provenance(every_set):
    pairs, _, manifest = every_set
    assert set(ADAPTERS.names()) == {"codenet", "venus", "ecco", "pie4perf", "runbugrun", "prosec", "cybernative", "codescaler",
                                     "coder-pile"}
    assert {p["source"] for p in pairs.values()} == {f"external:{name}" for name in ADAPTERS.names()}
    for pair_id, pair in pairs.items():
        name = pair["source"].removeprefix("external:")
        assert pair_id.startswith(f"external/{name}/") and pair["origin"]["instruct_source"] == name
        assert pair["origin"]["instruct_row"] and pair["prompt"].strip() and pair["chosen"] != pair["rejected"]
        assert pair["prompt_origin"] in ("external", "external_fallback")
        assert pair["language"] in languages().names
    assert manifest.records_out == len(pairs) == 17
    assert manifest.records_in == sum(v for k, v in manifest.counters.items() if k.endswith(".rows"))
    assert sum(manifest.dropped.values()) == len(every_set.dropped())  # every drop is recorded, and counted under its reason


def test_codenet_pairs_submissions_of_one_user_by_runtime_and_memory(every_set):
    pairs, _, manifest = every_set
    found = of(pairs, "codenet")
    assert set(found) == {"external/codenet/p00001/u1/runtime-efficiency/s002-s001",
                          "external/codenet/p00001/u2/memory-efficiency/s004-s005",
                          "external/codenet/p00003/u9/runtime-efficiency/s101-s102"}
    fast = found["external/codenet/p00001/u1/runtime-efficiency/s002-s001"]
    assert fast["criterion"] == "Runtime Efficiency" and fast["language"] == "Python" and "print(a + b)" in fast["chosen"]
    assert fast["prompt"] == "Print the sum of A and B." and fast["prompt_origin"] == "external"
    small = found["external/codenet/p00001/u2/memory-efficiency/s004-s005"]
    assert small["criterion"] == "Memory Efficiency" and "6.00x" in small["verification"]
    cpp = found["external/codenet/p00003/u9/runtime-efficiency/s101-s102"]
    assert cpp["language"] == "C++" and cpp["prompt_origin"] == "external_fallback" and "p00003" in cpp["prompt"]
    assert dropped(manifest, "codenet") == {"not_accepted": 1, "invalid_measurement": 1, "missing_column": 1,
                                            "unknown_language": 1, "single_submission": 1, "ratio_below_threshold": 3}
    assert manifest.counters["codenet.rows"] == 11 and manifest.counters["codenet.kept"] == 3


def test_venus_pairs_solutions_of_one_problem_at_least_five_times_apart(every_set):
    pairs, _, manifest = every_set
    found = of(pairs, "venus")
    runtime = [p for p in found.values() if p["criterion"] == "Runtime Efficiency"]
    memory = [p for p in found.values() if p["criterion"] == "Memory Efficiency"]
    assert len(runtime) == 1 and len(memory) == 1
    assert "range(len(nums))" in runtime[0]["rejected"] and runtime[0]["pair_id"].startswith("external/venus/python-1/runtime-efficiency/")
    assert runtime[0]["prompt"] == "Given an array nums, return its sum.\n\nInput: nums = [1,2]\nOutput: 3"
    assert memory[0]["chosen"].endswith("return 2 * n\n") and memory[0]["language"] == "Python"
    assert dropped(manifest, "venus") == {"ratio_below_threshold": 1, "too_few_solutions": 1, "missing_column": 1}


def test_ecco_and_pie_take_the_faster_program_and_pie_checks_the_ratio(every_set):
    pairs, _, manifest = every_set
    (ecco_pair,) = of(pairs, "ecco").values()
    assert ecco_pair["criterion"] == "Runtime Efficiency" and "n * (n - 1) // 2" in ecco_pair["chosen"]
    assert ecco_pair["prompt"] == "Given n, print the sum of the integers below n." and ecco_pair["prompt_origin"] == "external"
    assert dropped(manifest, "ecco") == {"identical_sides": 1, "missing_column": 1}
    (pie_pair,) = of(pairs, "pie4perf").values()
    assert pie_pair["pair_id"] == "external/pie4perf/s_a-s_b" and pie_pair["language"] == "C++"
    assert "500000000L" in pie_pair["chosen"] and "10.00x" in pie_pair["verification"]
    assert pie_pair["prompt_origin"] == "external_fallback"
    assert dropped(manifest, "pie4perf") == {"ratio_below_threshold": 1, "malformed_row": 1}
    assert any(d["reason"] == "malformed_row" and d["record"] == "{not json" for d in every_set.dropped())


def test_runbugrun_from_a_datasets_folder_chooses_the_fix(every_set):
    pairs, _, manifest = every_set
    (fix,) = of(pairs, "runbugrun").values()
    assert fix["pair_id"] == "external/runbugrun/11-12" and fix["criterion"] == "Functional Correctness"
    assert "a + b" in fix["chosen"] and "a - b" in fix["rejected"] and fix["language"] == "Python"
    assert dropped(manifest, "runbugrun") == {"language_not_selected": 1, "unknown_language": 1, "identical_sides": 1,
                                              "missing_column": 1}


def test_security_sets_choose_the_secure_side(every_set):
    pairs, _, manifest = every_set
    found = of(pairs, "prosec")
    assert sorted(p["language"] for p in found.values()) == ["C", "C++", "Python"]
    assert all(p["criterion"] == "Security Hardness" and "subprocess.run" in p["chosen"] and "os.system" in p["rejected"]
               for p in found.values())
    assert dropped(manifest, "prosec") == {"benign_pair": 1, "unknown_language": 1, "missing_column": 1}
    found = of(pairs, "cybernative")
    assert sorted(p["language"] for p in found.values()) == ["C#", "C++", "Python"]
    cpp = next(p for p in found.values() if p["language"] == "C++")
    assert cpp["chosen"] == "safe_copy_1(dst, src, sizeof dst);\n" and cpp["rejected"] == "unsafe_copy_1(dst, src);\n"
    assert cpp["prompt"].startswith("Write a c++ function") and cpp["criterion"] == "Security Hardness"
    assert dropped(manifest, "cybernative") == {"unknown_language": 1, "malformed_row": 1}


def test_codescaler_keeps_negatives_that_pass_most_tests(every_set):
    pairs, _, manifest = every_set
    (pair,) = of(pairs, "codescaler").values()
    assert pair["criterion"] == "Functional Correctness" and pair["chosen"] == "print(max(map(int, input().split())))\n"
    assert "0.80" in pair["verification"]
    assert dropped(manifest, "codescaler") == {"pass_rate_out_of_range": 1, "missing_column": 1}


def test_coder_pile_reads_the_chosen_tasks_and_draws_a_hard_negative(every_set):
    pairs, _, manifest = every_set
    found = of(pairs, "coder-pile")
    web = next(p for p in found.values() if p["language"] == "Python")
    assert web["prompt"] == "how to reverse a list in python" and web["chosen"] == "def rev(xs):\n    return xs[::-1]\n"
    assert web["rejected"] in ("def rev(xs):\n    return xs\n", "def rev(xs):\n    return sorted(xs)\n")
    refined = next(p for p in found.values() if p["language"] == "C++")
    assert refined["prompt"].startswith("Given a piece of code, write a refined version of the code.\n\n```cpp\nint f(int a)")
    assert manifest.counters["coder-pile.rows"] == 4  # the code2text and zh files are not read
    assert dropped(manifest, "coder-pile") == {"no_negatives": 1, "unknown_language": 1}


def test_caps_and_shares_choose_by_pair_id_hash_whatever_the_shard_count(tmp_path, run_stage):
    sources = [{**prosec(tmp_path, count=30), "share": 2, "record_drops": False},
               {**cybernative(tmp_path, count=12), "cap": 10, "share": 1},
               {**ecco(tmp_path), "cap": 0}]
    # After caps: prosec 30, cybernative 10 (2 over its cap); ecco keeps none. Shares 2:1 allow a mix
    # of min(30 * 3/2, 10 * 3) = 30, and `total` makes it 24: prosec keeps 16, cybernative 8.
    config = {"sources": sources, "total": 24}
    one, reasons, manifest = run_stage("external", config, run_dir=tmp_path / "one", num_shards=1)
    two, _, _ = run_stage("external", config, run_dir=tmp_path / "two", num_shards=2, running_mode="multi_threading", workers=2)
    assert set(one) == set(two)
    for name, quota in (("prosec", 16), ("cybernative", 8)):
        kept = sorted(of(one, name))
        assert len(kept) == quota
        assert manifest.counters[f"{name}.candidates"] > quota
    assert dropped(manifest, "prosec") == {"over_share": 14} and manifest.dropped["over_share"] == 14 + 2
    assert dropped(manifest, "cybernative") == {"over_cap": 2, "over_share": 2}
    assert dropped(manifest, "ecco") == {"over_cap": 1, "identical_sides": 1, "missing_column": 1}
    # Kept: each source's lowest-ranked pair ids; cut by the cap: the highest-ranked.
    cyber = [*of(one, "cybernative"), *(key for key in reasons if key.startswith("external/cybernative/"))]
    ranked = sorted(cyber, key=lambda key: (stable_rank(key), key))
    assert sorted(ranked[:8]) == sorted(of(one, "cybernative"))
    assert [reasons[key] for key in ranked[8:]] == ["over_share", "over_share", "over_cap", "over_cap"]
    assert not any(key.startswith("external/prosec/") for key in reasons)  # counted, not recorded (record_drops off)


def test_mix_quotas():
    counts = {"a": 30, "b": 12, "c": 5, "d": 0}
    caps = {"a": None, "b": 10, "c": None, "d": None}
    assert mix_quotas(counts, caps, {}, None) == {"a": 30, "b": 10, "c": 5, "d": 0}
    assert mix_quotas(counts, caps, {"a": 2, "b": 1}, None) == {"a": 20, "b": 10, "c": 5, "d": 0}
    assert mix_quotas(counts, caps, {"a": 2, "b": 1}, 24) == {"a": 16, "b": 8, "c": 5, "d": 0}
    # A source with a share but no candidates does not empty the mix.
    assert mix_quotas(counts, caps, {"a": 1, "b": 1, "d": 5}, None) == {"a": 10, "b": 10, "c": 5, "d": 0}
    assert mix_quotas({"a": 7, "b": 7}, {}, {"a": 0.1, "b": 0.2}, None) == {"a": 3, "b": 7}


def test_config_errors_name_the_source_and_the_known_names():
    def stage(source: dict, **extra) -> None:
        RunConfig(stages={"external": {"sources": [source], **extra}}).stage_config("external")

    with pytest.raises(ConfigError, match="unknown set 'venus2'; known: codenet, venus"):
        stage({"name": "venus2", "path": "x"})
    with pytest.raises(ConfigError, match=r"unknown column roles \['problem'\]; known: question_id"):
        stage({"name": "venus", "path": "x", "columns": {"problem": "q"}})
    with pytest.raises(ConfigError, match="options.zipf_exponent"):
        stage({"name": "coder-pile", "path": "x", "options": {"zipf_exponent": -1}})
    with pytest.raises(ConfigError, match="ecco has no runtime or memory measurements"):
        stage({"name": "ecco", "path": "x", "min_ratio": 2})
    with pytest.raises(ConfigError, match="appear twice"):
        RunConfig(stages={"external": {"sources": [{"name": "ecco", "path": "x"}, {"name": "ecco", "path": "y"}]}}).stage_config("external")
    with pytest.raises(ConfigError, match="none has one"):
        stage({"name": "ecco", "path": "x"}, total=5)


def test_missing_copy_is_a_config_error_and_the_fingerprint_follows_the_files(tmp_path, run_stage):
    with pytest.raises(ConfigError, match=r"sources\[0\] \(ecco\).*no such file"):
        run_stage("external", {"sources": [{"name": "ecco", "path": str(tmp_path / "nowhere")}]})
    source = ecco(tmp_path)
    config = External.Config.model_validate({"sources": [source]})
    before = External.fingerprint(config)
    assert any(key.endswith(".parquet") for key in before)
    (tmp_path / "ecco" / "edit" / "train-00001-of-00002.parquet").write_bytes(b"")
    assert External.fingerprint(config) != before


def test_adapter_helpers():
    assert extract_code("Use this:\n```python\nx = 1\n```\nor\n```\ny = 22\nz = 3\n```") == "y = 22\nz = 3\n"
    assert extract_code("plain code\n") == "plain code\n"
    assert html_to_text("<p>Let 10<sup>5</sup> &lt; n.</p><ul><li>one</li><li>two</li></ul>") == "Let 10^5 < n.\n\n- one\n\n- two"
    adapter = ADAPTERS["codenet"](AdapterSettings(languages=("cpp",)), languages())
    assert adapter.language("C++") == "C++" and adapter.language("Python").reason == "language_not_selected"
    with pytest.raises(ValueError, match="not in the language registry"):
        ADAPTERS["codenet"](AdapterSettings(languages=("Klingon",)), languages())
