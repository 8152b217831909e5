"""Inputs the tests share: commit rows and records, candidate pairs written as an upstream stage, commit
messages by criterion, the sources of a small real run, a Rust language entry, and the run configs built
from them. Test modules import these from here, never from one another."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from pipelines.run.config import RunConfig, import_builtin_stages
from schemas import CRITERIA, Candidate, Commit
from tests.support.git_fixtures import MIT, GitRepo
from tests.support.stage_fixtures import candidate, write_stage

FC, RT, MEM, SEC, READ = CRITERIA

# A commit subject every message rule of `mine` keeps.
GOOD = "Fix the off-by-one error in the loop bound"

# The sample stages (tests/support/sample_stages.py), loaded as a plugin by the configs of write_config.
PLUGIN = "tests.support.sample_stages"


# --- commits --------------------------------------------------------------------------------------

def commit_row(i: int, message: str) -> dict:
    """Row `i` of a commit table (a one-line Python edit), with `message`."""
    return {
        "repo": "octo/demo", "commit": f"{i:040x}", "parent": f"{i + 1000:040x}", "path": f"src/m{i}.py",
        "language": "Python", "license": "mit", "committed_at": 1_500_000_000 + i, "subject": message.splitlines()[0],
        "message": message, "before": f"x = {i}\n", "after": f"x = {i + 1}\n", "split": "train",
    }


def commit(sha: str, subject: str, before: str = "def f(x):\n    return x\n", after: str = "def f(x):\n    return abs(x)\n") -> Commit:
    """A Python commit of octo/demo (by default: `return x` becomes `return abs(x)`)."""
    return Commit(repo="octo/demo", commit=sha, parent="p" * 40, path="src/f.py", language="Python", license="mit",
                  committed_at=1_600_000_000, subject=subject, message=subject + "\n", before=before, after=after, split="train")


# Commit subjects and bodies in the style of real projects; each speaks of its criterion through a
# seed term and through context words that a classifier can learn once the term is masked.
MESSAGES = [
    (FC, "Fix bug where parse_date returned the wrong day", "Leap years made the parser crash or return the wrong day."),
    (FC, "Handle the edge case of an empty list in median()", "median([]) used to crash instead of returning None."),
    (FC, "Fix logic error in pagination", "The last page was dropped, so the wrong total was returned to the caller."),
    (FC, "Fix null pointer crash when the config has no user section", "Return a default instead of crashing on startup."),
    (FC, "Fix regression in CSV export", "Quoted fields were split in the wrong place, producing a wrong result and a crash on reload."),
    (FC, "Fix exception when the timezone is missing", "Parsing crashed; the result now falls back to UTC instead of the wrong offset."),
    (FC, "Handle error from the payment API", "A failed call made the checkout crash; it now returns the right status."),
    (RT, "Speed up the report generation", "The nested loop over all rows was slow; build a dict once so each lookup is quick."),
    (RT, "Make tokenizer faster", "Compile the regex once instead of in the loop; large inputs took seconds."),
    (RT, "Add caching for user permissions", "Every request hit the database, which was slow; the loop over roles is gone too."),
    (RT, "Fix latency of the search endpoint", "Avoid the slow linear scan in the request loop; responses come back in milliseconds."),
    (RT, "Speedup: precompute results of the scoring table", "The slow quadratic loop in rank() took seconds on large inputs."),
    (RT, "Optimize loop in image resize", "Vectorized the slow inner loop; resizing large inputs takes a fraction of the seconds it did."),
    (RT, "Use set for membership tests in dedupe", "The list made every check slow, quadratic in the loop over large inputs."),
    (MEM, "Fix memory leak in the image decoder", "Decoded frame buffers were never released, so RAM grew with every frame."),
    (MEM, "Reduce memory usage of the tile cache", "Release decoded buffers early instead of keeping every allocation alive in RAM."),
    (MEM, "Lower memory footprint of the log reader", "Stream lines instead of holding the whole file in RAM; fewer buffers and allocations."),
    (MEM, "Memory optimization for thumbnails", "Buffers for decoded frames are now released after use; allocations stay flat and RAM no longer grows."),
    (MEM, "Avoid memory bloat in the event queue", "Old events kept their payload buffers alive; release them so RAM stays flat."),
    (MEM, "Use less memory when exporting", "Write rows in chunks and release each buffer; RAM and allocations stay small."),
    (SEC, "Sanitize file names from uploads", "An attacker could pass ../ in the user supplied name and escape the upload directory."),
    (SEC, "Prevent SQL injection in the search filter", "User supplied terms were pasted into the query; an attacker could read any table. Escape them."),
    (SEC, "Fix XSS in the comment preview", "Escape user supplied HTML so an attacker cannot run script in other sessions."),
    (SEC, "Validate input of the redirect parameter", "An attacker could send users to any host; user supplied targets are now escaped and checked."),
    (SEC, "Harden the archive extractor against path traversal", "Entries from an attacker could escape the target directory; reject user supplied paths with ..."),
    (SEC, "Fix command injection in the git wrapper", "User supplied branch names went to the shell unescaped; an attacker could run commands."),
    (READ, "Refactor the config loader", "Split the long function into small helpers with clearer names; behaviour is unchanged."),
    (READ, "Rename confusing variables in the scheduler", "Use clearer names and helpers; no behaviour change."),
    (READ, "Remove dead code from the exporter", "The old helpers were never called; the module reads clearer now, behaviour unchanged."),
    (READ, "Simplify the retry helper", "Flatten the nested conditionals into small helpers with clearer names; no behaviour change."),
    (READ, "Extract method for the price calculation", "The duplicated block moves into one helper with a clearer name; behaviour is unchanged."),
    (READ, "Clean up imports and naming in utils", "Group helpers by topic with clearer names; no behaviour change."),
    (None, "Bump version to 2.3.1", "Release notes are in the changelog."),
    (None, "Update README installation instructions", "Mention pip and conda."),
    (None, "Add CI workflow for Python 3.12", "Run the test matrix on pushes to main."),
    (None, "Merge branch 'main' into release", ""),
    (None, "Translate messages into German", "Thanks to the translators."),
    (None, "Add project logo to the docs", ""),
    (None, "Update copyright year", ""),
    (None, "Add Dockerfile for local development", "Uses the slim Python image."),
    (None, "Document the environment variables", "List every variable the server reads at startup."),
    (None, "Pin sphinx for the docs build", ""),
]

# Unseen messages without any seed term that clearly speak of one criterion through context.
UNSEEN = [
    (MEM, "Release decoded frame buffers right after use", "RAM kept growing with every frame; allocations now stay flat."),
    (SEC, "Escape user supplied names before calling the shell", "An attacker could run arbitrary commands through a crafted name."),
    (RT, "Avoid the slow quadratic loop in rank()", "Large inputs took seconds; the lookup is quick now."),
]


# --- a small real run ------------------------------------------------------------------------------

# Five files, each changed once by a commit whose message names its criterion (copy.py: a near copy of stats.py).
FUNCTIONS = [
    ("stats.py", "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
     "def mean(xs):\n    if not xs:\n        return 0.0\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
     "Fix bug: mean crashed on an empty list (edge case)"),
    ("search.py", "def find(items, key):\n    for i in range(len(items)):\n        if items[i] == key:\n            return i\n    return -1\n",
     "def find(items, key):\n    index = {item: i for i, item in enumerate(items)}\n    if key in index:\n        return index[key]\n    return -1\n",
     "Speed up lookups with a dictionary index"),
    ("query.py", "def lookup(db, name):\n    sql = \"SELECT * FROM users WHERE name = '\" + name + \"'\"\n    return db.execute(sql)\n",
     "def lookup(db, name):\n    sql = 'SELECT * FROM users WHERE name = ?'\n    return db.execute(sql, (name,))\n",
     "Sanitize user input against sql injection"),
    ("copy.py", "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
     "def mean(xs):\n    if not xs:\n        return 0.0\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
     "Fix bug: the copied mean crashed on an empty list (edge case)"),  # a near copy of stats.py: dedup clusters them
    ("walk.c", "int sum(int *xs, int n) {\n    int total = 0;\n    for (int i = 0; i <= n; i++) {\n        total += xs[i];\n    }\n    return total;\n}\n",
     "int sum(int *xs, int n) {\n    int total = 0;\n    for (int i = 0; i < n; i++) {\n        total += xs[i];\n    }\n    return total;\n}\n",
     "Fix faulty loop bound that read past the end"),
]

# Instruction rows with solutions, two with tests (bug injection verifies against them).
INSTRUCT = [
    {"id": "r1", "instruction": "Return the larger of two numbers.",
     "solution": "def larger(a, b):\n    if a > b:\n        return a\n    return b\n",
     "tests": "assert larger(1, 2) == 2\nassert larger(3, 2) == 3\n"},
    {"id": "r2", "instruction": "Count the even numbers in a list.",
     "solution": "def evens(xs):\n    count = 0\n    for x in xs:\n        if x % 2 == 0:\n            count += 1\n    return count\n",
     "tests": "assert evens([1, 2, 4]) == 2\nassert evens([]) == 0\n"},
    {"id": "r3", "instruction": "Clamp a value into a range.",
     "solution": "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n"},
]


# --- languages -------------------------------------------------------------------------------------

RUST_ENTRY = textwrap.dedent(
    """
    languages:
      - name: Rust
        aliases: [rs]
        extensions: [.rs]
        grammar: {package: tree-sitter-rust, module: tree_sitter_rust, entry: language}
        nodes:
          comment: [line_comment, block_comment]
          function: [function_item]
          class: [struct_item, enum_item, trait_item]
        fence: rust
    """
)
RUST_CODE = "// sum\nstruct P { x: i32 }\nfn add(a: i32, b: i32) -> i32 { a + b }\n"


# --- configs ---------------------------------------------------------------------------------------


def write_config(tmp_path: Path, commits: Path, *, run_dir: Path | None = None, mode="in_memory", workers=1,
                 min_message=10, fail_on="", name="run.yaml", stall_once="") -> Path:
    """A YAML run config of the sample stages (a JSONL commit source and a message filter) over `commits`."""
    config = {
        "run_dir": str(run_dir or tmp_path / "run"),
        "num_shards": 3,
        "runner": {"running_mode": mode, "workers": workers},
        "plugins": [PLUGIN],
        # The filter is listed first on purpose: the order comes from the stages' inputs.
        "stages": {
            "sample_filter": {"min_message": min_message, "stall_once": stall_once},
            "sample_source": {"path": str(commits), "fail_on": fail_on},
        },
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def label_config(run_dir: Path, url: str, **judge: object) -> RunConfig:
    """A run of `label` alone with one `openai` judge at `url` (short timeouts and backoff for the fake server)."""
    judge = {"backend": "openai", "model": "judge", "base_url": url, "concurrency": 1, "timeout": 1.0,
             "max_retries": 8, "max_backoff": 0.02, **judge}
    stage = {"judges": [judge], "votes": 2, "max_tokens": 16, "batch_size": 4, "min_matches": 1, "max_contradictions": 1,
             "qualify": None}  # what these tests check is the cache and the backend, not the judge
    return RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                     stages={"label": stage})


def candidates(run_dir: Path, count: int) -> list[str]:
    """`count` pairs written as a finished `dedup` stage for `label`, each prompt naming it ("Task p<i>."); their ids."""
    import_builtin_stages()
    pairs = [candidate(f"p{i}", f"def f{i}(xs):\n    return sorted(xs)[{i}]\n", f"def f{i}(xs):\n    return xs[{i}]\n",
                       prompt=f"Task p{i}. Return the item of rank {i}.") for i in range(count)]
    write_stage(run_dir, "dedup", pairs, Candidate)
    return [pair.pair_id for pair in pairs]


def small_run_repository(path: Path) -> GitRepo:
    """A git repository for the small real run: the helpers of FUNCTIONS imported, then one commit per change."""
    repo = GitRepo(path)
    repo.write("LICENSE", MIT)
    for name, before, _, _ in FUNCTIONS:
        repo.write(f"src/{name}", before)
    repo.commit("Initial import of the helpers")
    for name, _, after, message in FUNCTIONS:
        repo.write(f"src/{name}", after)
        repo.commit(message)
    return repo


def small_run_config(run_dir: Path, sources: dict[str, Path], mode: str, workers: int) -> dict:
    """A run of mine -> synthesize -> parse -> dedup -> assemble over `sources` ("repo": a repository of FUNCTIONS' commits,
    "instruct": INSTRUCT as JSONL), as a config document."""
    stages = {
        "mine": {"repos": [str(sources["repo"])]},
        "synthesize": {"instruct": [{"name": "rows", "path": str(sources["instruct"]), "tests_column": "tests"}],
                       "sandbox_seconds": 5},
        "parse": {},
        "dedup": {"threshold": 0.6, "ngram": 3, "num_perm": 64},
        "assemble": {"inputs": ["dedup"], "max_tokens": 1024},
    }
    return {"run_dir": str(run_dir), "num_shards": 2, "runner": {"running_mode": mode, "workers": workers}, "stages": stages}
