"""The README and docs/ as written: every code block runs or is checked, every link and path
they name exists inside the repository, and what they promise about preparation holds.

Fenced blocks carry one of three languages: ```python blocks are executed (each on its own,
in a fresh namespace, in one subprocess so that a block that registers a pool cannot leak
into other tests); ```bash blocks are commands whose scripts, config files, config fields,
flags and make targets are checked without running them; ```text blocks are not code, or
are code that cannot run here, and then say so on their first line ("# not run ...").
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGS = ("python", "bash", "text")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"^(poolnets|tests|configs|bench|tools|examples|report|docs)/[\w./-]*$")
TOP_FILES = {"train.py", "Makefile", "pyproject.toml", "README.md"}


def fenced(path: Path) -> list[tuple[str, str, str]]:
    """(language, code, "file:line") of every fenced block."""
    text = path.read_text()
    return [(m.group(1).strip(), m.group(2),
             f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
            for m in FENCE.finditer(text)]


def prose(path: Path) -> str:
    """The file without its fenced blocks."""
    return FENCE.sub("", path.read_text())


def spans(path: Path) -> list[str]:
    """The inline code spans of the prose, each on one line."""
    return [" ".join(span.split()) for span in INLINE.findall(prose(path))]


def blocks(*langs: str) -> list[tuple[str, str, str]]:
    return [b for path in DOCS for b in fenced(path) if b[0] in langs]


def test_every_block_says_how_it_is_checked():
    for lang, code, where in blocks(*{b[0] for p in DOCS for b in fenced(p)}):
        assert lang in LANGS, f"{where}: fenced block language {lang!r}; use one of {LANGS}"
        if lang == "text" and re.search(r"^\s*(import |from \w+ import |python )", code, re.M):
            assert code.lstrip().startswith("# not run"), (
                f"{where}: code in a ```text block must say why it is not run")


def test_python_blocks_run_as_written(tmp_path):
    cases = [(where, code) for _, code, where in blocks("python")]
    assert cases, "no ```python block found"
    runner = (
        "import json, sys, traceback\n"
        "failed = []\n"
        "for where, code in json.load(open(sys.argv[1])):\n"
        "    try:\n"
        "        exec(compile(code, where, 'exec'), {'__name__': '__doc_block__'})\n"
        "    except Exception:\n"
        "        failed.append(where + '\\n' + traceback.format_exc(limit=3))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    done = subprocess.run([sys.executable, "-c", runner, str(tmp_path / "cases.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("doc_config", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _check_field(config, dotted: str, where: str) -> None:
    node = config
    for part in dotted.split("."):
        assert hasattr(node, "keys") and part in node, f"{where}: no config field {dotted!r}"
        node = node[part]


def _option(args: list[str], i: int) -> tuple[str, str | None, int]:
    """(flag, value, next index) of args[i], for `--flag=value` and `--flag value`."""
    flag, eq, value = args[i].partition("=")
    if eq:
        return flag, value, i + 1
    if i + 1 < len(args) and not args[i + 1].startswith("-"):
        return flag, args[i + 1], i + 2
    return flag, None, i + 1


def check_train(args: list[str], where: str) -> None:
    """train.py's flags: --config FILE, --config.<field>=V (a field of that file), --workdir."""
    path, overrides, i = "configs/default.py", [], 0
    while i < len(args):
        flag, value, i = _option(args, i)
        if flag == "--config":
            path = value
        elif flag.startswith("--config."):
            overrides.append(flag[len("--config."):])
        else:
            assert flag == "--workdir", f"{where}: train.py has no flag {flag!r}"
    assert (ROOT / path).is_file(), f"{where}: no config file {path}"
    config = _load_config(path)
    for field in overrides:
        _check_field(config, field, f"{where} ({path})")


def check_report(args: list[str], where: str) -> None:
    """poolnets.report's flags, parsed and checked as the command does (config files are
    read relative to the repository)."""
    from poolnets.report.__main__ import parse_args

    args, i = list(args), 0
    while i < len(args):
        flag, value, i = _option(args, i)
        if flag == "--config":
            assert (ROOT / value).is_file(), f"{where}: no report config {value}"
            args[args.index(value)] = str(ROOT / value)
    try:
        parse_args(args)
    except ValueError as e:
        raise AssertionError(f"{where}: {e}") from None


def check_command(tokens: list[str], where: str) -> None:
    while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):  # environment variables
        tokens = tokens[1:]
    if tokens[:1] == ["/usr/bin/time"]:
        tokens = tokens[1:]
    if not tokens:
        return
    for token in tokens:
        if REPO_PATH.match(token) or token in TOP_FILES:
            assert (ROOT / token).exists(), f"{where}: {token} does not exist"
    if tokens[0] == "make":
        makefile = (ROOT / "Makefile").read_text()
        for token in tokens[1:]:
            if token.startswith("ARGS="):
                check_train(shlex.split(token[len("ARGS="):]), where)
            else:
                assert re.search(rf"^{token}:", makefile, re.M), f"{where}: no make target {token}"
    elif tokens[0].endswith("python") and tokens[1:3] == ["-m", "poolnets.report"]:
        check_report(tokens[3:], where)
    elif tokens[0].endswith("python") and tokens[1:2] == ["train.py"]:
        check_train(tokens[2:], where)
    elif (tokens[0].endswith("python") and tokens[1:2] and tokens[1].endswith(".py")
          and not tokens[1].startswith("/")):  # a script outside the repository: not ours
        source = (ROOT / tokens[1]).read_text()
        for token in tokens[2:]:
            flag = token.split("=", 1)[0]
            if flag.startswith("--"):
                assert f'"{flag}"' in source, f"{where}: {tokens[1]} has no flag {flag}"


def commands(code: str) -> list[list[str]]:
    """Each command line of a shell block, continuations joined, comments dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


def inline_commands() -> list[tuple[list[str], str]]:
    found = []
    for path in DOCS:
        for span in spans(path):
            if re.match(r"(make |python |\.venv/bin/python |/usr/bin/time |[A-Z_]+=\S+ )", span):
                found.append((shlex.split(span), f"{path.relative_to(ROOT)}: `{span}`"))
    return found


def test_shell_commands_name_what_exists():
    checked = 0
    for _, code, where in blocks("bash", "text"):
        for tokens in commands(code):
            check_command(tokens, where)
            checked += 1
    for tokens, where in inline_commands():
        check_command(tokens, where)
        checked += 1
    assert checked > 10


def test_paths_in_prose_exist():
    for path in DOCS:
        for span in spans(path):
            if REPO_PATH.match(span) or span in TOP_FILES:
                assert (ROOT / span).exists(), f"{path.relative_to(ROOT)}: {span} does not exist"


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#+ (.+)$", prose(path), re.M)}


def test_links_resolve_inside_the_repository():
    for path in [*DOCS, ROOT / "report" / "README.md"]:
        for target in LINK.findall(prose(path)):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve()
            where = f"{path.relative_to(ROOT)}: ({target})"
            assert resolved.is_relative_to(ROOT), f"{where} points outside the repository"
            assert resolved.exists(), f"{where} does not exist"
            if anchor:
                assert anchor in anchors(resolved), f"{where}: no heading #{anchor}"


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_command_check_catches_mistakes():
    """Not vacuous: a misspelt field, config file, flag or report setting fails it."""
    for line, error in (
            ("python train.py --config configs/resnet20_cifar10.py --config.model.downsampel=avg",
             "no config field 'model.downsampel'"),
            ("python train.py --config configs/nope.py", "does not exist"),
            ("python train.py --steps 3", "no flag '--steps'"),
            ("make train ARGS='--config.num_epoch=3'", "no config field 'num_epoch'"),
            ("python -m poolnets.report --config.max_minute=40",
             "unknown config field 'max_minute'"),
            ("python bench/pooling.py --repeat 15", "no flag --repeat"),
            ("make tests", "no make target tests")):
        with pytest.raises(AssertionError, match=re.escape(error)):
            check_command(shlex.split(line), "example")


def test_digits_preparation_says_what_happens(tmp_path, capsys, caplog):
    """The README says nothing is downloaded: preparing the bundled digits prints one line
    saying so, and neither TFDS's "Downloading and preparing dataset" nor its warning."""
    from poolnets.data import digits

    data_dir = str(tmp_path / "tfds")
    with caplog.at_level("WARNING"):
        digits.prepare(data_dir)
        first = capsys.readouterr()
        digits.prepare(data_dir)
        second = capsys.readouterr()
    assert first.out == ""
    assert first.err == (f"poolnets: preparing the bundled digits dataset (no download) in "
                         f"{data_dir}\n")
    assert second.out == second.err == ""
    assert [r.getMessage() for r in caplog.records] == []
