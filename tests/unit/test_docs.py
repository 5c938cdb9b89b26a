"""The docs are real: every link in README.md and docs/*.md resolves, every command a reader copies exists.

Read, never run: a link to a relative path must name a file of the
repository, and its `#anchor` a heading of that file (GitHub's slugs); a
command in a fenced `sh`, `bash`, `shell` or `console` block, or written
inline in prose as `make …`, `rewards …`, `celery …` or `python -m …`, is
checked by its program: a make target in the Makefile, a `rewards`
command line the CLI's parser accepts, an importable module, a file, a
compose service. A program this file does not know fails the test until it
gets a checker or a place in OUTSIDE_PROGRAMS. Code and config that cite a
section, (docs/security.md, "RabbitMQ users"), must name one that exists.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
README_LINES_MAX = 200


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# Programs that are not this project's: the docs may name them, and only their name is checked.
OUTSIDE_PROGRAMS = {
    "apt-get", "cat", "cd", "cp", "curl", "export", "git", "openssl", "pg_dump", "pip", "promtool", "psql",
    "rabbitmqctl", "redis-cli", "ssh",
}
# Links to the web are not fetched here (no network); each one must be listed.
EXTERNAL_LINKS: set[str] = set()
# The fence tags whose lines are commands; in `console` only the lines after a `$ ` prompt are.
COMMAND_FENCES = {"sh", "bash", "shell", "console"}
# Inline code in prose is checked when it starts like this: it is what readers copy.
INLINE_COMMAND = re.compile(r"^(\.venv/bin/)?(make|rewards|celery -A|python3? -m) ")


# --- reading markdown -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    lang: str
    lines: list[tuple[int, str]]


@dataclass(frozen=True)
class Doc:
    path: Path
    headings: list[str]
    links: list[tuple[int, str]]
    blocks: list[Block]
    inline_code: list[tuple[int, str]]

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def read_doc(path: Path) -> Doc:
    headings, links, blocks, inline_code = [], [], [], []
    paragraph: list[tuple[int, str]] = []
    fence: tuple[str, Block] | None = None

    def end_paragraph() -> None:
        if paragraph:
            _read_paragraph(paragraph, links, inline_code)
            paragraph.clear()

    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if fence is not None:
            marker, block = fence
            if line.strip().startswith(marker[0] * len(marker)) and not line.strip().strip(marker[0]):
                fence = None
            else:
                block.lines.append((number, line))
            continue
        opened = _FENCE.match(line)
        if opened:
            end_paragraph()
            block = Block(opened.group(2).lower(), [])
            blocks.append(block)
            fence = (opened.group(1), block)
            continue
        heading = _HEADING.match(line)
        if heading:
            end_paragraph()
            headings.append(heading.group(2))
            paragraph.append((number, heading.group(2)))
            end_paragraph()
        elif line.strip():
            paragraph.append((number, line))
        else:
            end_paragraph()
    end_paragraph()
    assert fence is None, f"{path.relative_to(ROOT)}: a fenced block is never closed"
    return Doc(path, headings, links, blocks, inline_code)


def _read_paragraph(lines: list[tuple[int, str]], links: list, inline_code: list) -> None:
    """Code spans and links of one paragraph, each with the line it starts on (a span may wrap)."""
    text = "\n".join(line for _, line in lines)
    first = lines[0][0]

    def line_of(offset: int) -> int:
        return first + text.count("\n", 0, offset)

    for span in _CODE_SPAN.finditer(text):
        inline_code.append((line_of(span.start()), " ".join(span.group(2).split())))
    # Links are read with the code spans blanked out: `[x](y)` inside code is not a link.
    blanked = _CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group(0)), text)
    for link in _LINK.finditer(blanked):
        links.append((line_of(link.start()), link.group(1)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercase, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = "".join(char for char in text.lower()
                   if char in " -_" or unicodedata.category(char)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(doc: Doc) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in doc.headings:
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


DOCS_READ = {path: read_doc(path) for path in doc_files()}


def where(doc: Doc, number: int) -> str:
    return f"{doc.name} line {number}"


# --- links -------------------------------------------------------------------------------------------------------


def link_problem(doc: Doc, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):
        if target.startswith(("http://", "https://")):
            return None if target in EXTERNAL_LINKS else f"{target} is not in EXTERNAL_LINKS"
        return f"{target}: only relative paths and http(s) links are checked"
    path_part, _, anchor = target.partition("#")
    linked = (doc.path.parent / path_part).resolve() if path_part else doc.path
    if not linked.exists():
        return f"{path_part} does not exist"
    if ROOT not in linked.parents and linked != ROOT:
        return f"{path_part} is outside the repository"
    if anchor:
        if linked.suffix != ".md":
            return f"#{anchor}: anchors are checked in markdown files only, not {path_part}"
        linked_doc = DOCS_READ.get(linked) or read_doc(linked)
        if anchor not in anchors(linked_doc):
            return f"no heading of {linked_doc.name} has the anchor #{anchor}"
    return None


def test_the_link_reader_finds_links_and_headings():
    # Guards the checks below: if the reader found nothing, every one of them would pass.
    readme = DOCS_READ[README]
    assert any(target.startswith("docs/") for _, target in readme.links)
    assert "how-it-fits-together" in anchors(readme)
    assert slug("High availability: PostgreSQL") == "high-availability-postgresql"
    assert slug("`make chaos`") == "make-chaos"
    assert slug("Running the full stack (compose)") == "running-the-full-stack-compose"


@pytest.mark.parametrize("path", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_a_heading_that_exist(path):
    doc = DOCS_READ[path]
    broken = [f"{where(doc, number)}: ({target}) {problem}" for number, target in doc.links
              if (problem := link_problem(doc, target))]
    assert not broken, "\n".join(broken)


def test_every_external_link_listed_is_still_used():
    used = {target for doc in DOCS_READ.values() for _, target in doc.links}
    assert EXTERNAL_LINKS <= used, f"no longer linked: {sorted(EXTERNAL_LINKS - used)}"


# --- the code's citations --------------------------------------------------------------------------------------

# Code and config cite a section as (docs/security.md, "RabbitMQ users"); the page and the heading must exist.
_CITATION = re.compile(r"docs/([\w-]+\.md)(?:[,\s(#]*[\"'](?P<heading>[^\"'\n]+)[\"'])?")


def citing_files() -> list[Path]:
    found = [path for path in ROOT.glob("**/*.py") if not {".venv", ".git", "build"} & set(path.parts)]
    return [*found, ROOT / "docker-compose.yml", ROOT / ".env.example", ROOT / "Makefile",
            *sorted((ROOT / ".ci").iterdir())]


def test_every_docs_section_the_code_cites_exists():
    cited, broken = 0, []
    for path in citing_files():
        text = path.read_text(errors="replace")
        for citation in _CITATION.finditer(text):
            cited += 1
            page = DOCS / citation.group(1)
            number = text.count("\n", 0, citation.start()) + 1
            name = f"{path.relative_to(ROOT)} line {number}"
            if not page.exists():
                broken.append(f"{name}: docs/{citation.group(1)} does not exist")
            elif citation.group("heading") and citation.group("heading").replace("`", "") not in [
                    heading.replace("`", "") for heading in read_doc(page).headings]:
                broken.append(f"{name}: docs/{citation.group(1)} has no heading {citation.group('heading')!r}")
    assert cited, "no citation of docs/ found: the scan is broken"
    assert not broken, "\n".join(broken)


# --- pages -------------------------------------------------------------------------------------------------------


def linked_pages(doc: Doc) -> set[Path]:
    return {(doc.path.parent / target.partition("#")[0]).resolve() for _, target in doc.links
            if target.partition("#")[0] and not re.match(r"^[a-z]+:", target)}


def test_the_readme_is_a_first_page_of_at_most_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_LINES_MAX, f"README.md has {lines} lines; move the detail into docs/"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda path: path.name)
def test_every_docs_page_is_in_the_index_and_reachable_from_the_readme(page):
    if page == INDEX:
        assert INDEX in linked_pages(DOCS_READ[README]), "README.md does not link docs/README.md"
        return
    # The README links the index, so a page the index lists is two clicks from the README.
    assert page in linked_pages(DOCS_READ[INDEX]), f"docs/README.md does not list {page.name}"


def test_the_readmes_test_command_is_what_ci_runs():
    readme_commands = [line for block in DOCS_READ[README].blocks if block.lang in COMMAND_FENCES
                       for _, line in block.lines]
    assert any(line.split("#")[0].split() == ["make", "test"] for line in readme_commands)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert "make test" in ci


# --- commands ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: Doc
    number: int
    words: list[str]


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATORS = {"&&", "||", ";", "|", "&"}
_REDIRECTIONS = {">", ">>", "<", "2>", "&>"}


def commands_of(doc: Doc, number: int, line: str) -> list[Command]:
    """The commands of one shell line: comments, env assignments and redirections dropped; `a && b` is two."""
    line = re.sub(r"(^|\s{2,})#.*$", "", line).strip()
    if not line:
        return []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.commenters = ""
    lexer.wordchars += "…@%:,[]{}+!"
    try:
        tokens = list(lexer)
    except ValueError as error:
        raise AssertionError(f"{where(doc, number)}: `{line}` is not a shell line: {error}") from error
    commands, words, skip_next = [], [], False
    for token in [*tokens, ";"]:
        if skip_next:
            skip_next = False
        elif token in _REDIRECTIONS:
            skip_next = True
        elif token in _SEPARATORS:
            while words and _ASSIGNMENT.match(words[0]):
                words.pop(0)
            if words:
                commands.append(Command(doc, number, words))
            words = []
        else:
            words.append(token)
    return commands


def shell_lines(block: Block) -> list[tuple[int, str]]:
    """A block's command lines: after a `$ ` prompt in console blocks, every line otherwise; `\\` joins lines."""
    found: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in block.lines:
        text = raw.strip()
        if pending is not None:
            start, so_far = pending
            text, pending = so_far + " " + text, None
            number = start
        elif block.lang == "console":
            if not text.startswith("$ "):
                continue
        text = text.removeprefix("$ ")
        if text.endswith("\\"):
            pending = (number, text[:-1])
            continue
        found.append((number, text))
    return found


def all_commands() -> list[Command]:
    commands = []
    for doc in DOCS_READ.values():
        for block in doc.blocks:
            if block.lang in COMMAND_FENCES:
                for number, line in shell_lines(block):
                    commands.extend(commands_of(doc, number, line))
        for number, code in doc.inline_code:
            words = code.split()
            while words and _ASSIGNMENT.match(words[0]):
                words.pop(0)
            if INLINE_COMMAND.match(" ".join(words)):
                commands.extend(commands_of(doc, number, " ".join(words)))
    return commands


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", (ROOT / "Makefile").read_text(), re.M))


def compose_services() -> set[str]:
    return set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def argparse_refusal(parse, argv: list[str]) -> str | None:
    """None if `parse(argv)` accepts the arguments, else argparse's own message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as leaving:
        if leaving.code not in (0, None):
            said = stderr.getvalue().strip()
            return said.splitlines()[-1] if said else f"exit {leaving.code}"
    return None


class _Parsed(Exception):
    """Raised once a module's parser has accepted its arguments, so that nothing else of `main` runs."""


def parse_only(main):
    """Call a module's `main(argv)` only as far as its argparse parser: the arguments are checked, nothing runs."""
    def parse(argv: list[str]) -> None:
        original = argparse.ArgumentParser.parse_args

        def parse_then_stop(self, args=None, namespace=None):
            original(self, args, namespace)
            raise _Parsed

        argparse.ArgumentParser.parse_args = parse_then_stop
        try:
            main(argv)
        except _Parsed:
            pass
        finally:
            argparse.ArgumentParser.parse_args = original
    return parse


def check_rewards(command: Command, args: list[str]) -> str | None:
    from rewards.cli.main import build_parser

    refusal = argparse_refusal(build_parser().parse_args, args)
    return refusal and f"the rewards command refuses it: {refusal}"


# Modules run with `python -m` that take arguments, and how to check them without running anything.
def _chaos_main():
    from chaos.run import main

    return main


MODULE_PARSERS = {"chaos": _chaos_main}


def check_python(command: Command, args: list[str]) -> str | None:
    if args[:1] != ["-m"] or len(args) < 2:
        path = next((word for word in args if not word.startswith("-")), None)
        if path is None or not (ROOT / path).is_file():
            return "a python command here is `python -m MODULE …` or a script of the repository"
        return None
    module, rest = args[1], args[2:]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    if found is None:
        return f"no module named {module}"
    if module in MODULE_PARSERS:
        refusal = argparse_refusal(parse_only(MODULE_PARSERS[module]()), rest)
        return refusal and f"python -m {module} refuses it: {refusal}"
    if module.startswith("benchmarks") and rest:
        return f"python -m {module} takes no arguments"
    if module == "celery":
        return check_celery(command, rest)
    if module == "cProfile" and rest[:1] == ["-m"]:
        return check_python(command, rest)
    return None


def check_celery(command: Command, args: list[str]) -> str | None:
    from celery.bin.celery import celery as celery_command

    app = args[args.index("-A") + 1] if "-A" in args else None
    if app is None:
        return "celery without -A APP"
    try:
        importlib.import_module(app.partition(":")[0])
    except Exception as error:  # noqa: BLE001 - any import error is the finding
        return f"the app module {app} does not import: {error!r}"
    rest = args[args.index("-A") + 2:]
    if not rest:
        return None
    target, options = rest[0], rest[1:]
    if target not in celery_command.commands:
        return f"celery has no {target!r} command"
    if target == "flower":
        return None
    known = {opt for param in celery_command.commands[target].params for opt in param.opts}
    unknown = [word.partition("=")[0] for word in options
               if word.startswith("-") and word.partition("=")[0] not in known]
    return f"celery {target} has no option {unknown}" if unknown else None


def check_make(command: Command, args: list[str]) -> str | None:
    missing = [word for word in args if not word.startswith("-") and not _ASSIGNMENT.match(word)
               and word not in make_targets()]
    return f"the Makefile has no target {missing}" if missing else None


def check_file(command: Command, args: list[str]) -> str | None:
    path = next((word for word in args if not word.startswith("-")), None)
    return None if path and (ROOT / path).is_file() else f"no file {path} in the repository"


def check_pytest(command: Command, args: list[str]) -> str | None:
    paths = [word.partition("::")[0] for word in args if not word.startswith("-") and "/" in word]
    missing = [path for path in paths if not (ROOT / path).exists()]
    return f"no test path {missing}" if missing else None


# Options of `docker compose` and its commands that take a value (the value is no service name).
_COMPOSE_VALUED = {"--env-file", "-f", "--file", "-p", "--project-name", "--profile", "--scale", "-t", "--timeout",
                   "-e", "--env", "-u", "--user", "-w", "--workdir", "--tail", "--index"}


def check_docker(command: Command, args: list[str]) -> str | None:
    if args[:1] != ["compose"]:
        return "only `docker compose` is checked here"
    words, index = args[1:], 0
    positional = []
    while index < len(words):
        word = words[index]
        if word in _COMPOSE_VALUED:
            index += 2
            continue
        if not word.startswith("-"):
            positional.append(word)
        index += 1
    if not positional:
        return "docker compose without a command"
    subcommand, named = positional[0], positional[1:]
    if subcommand in {"exec", "run"}:
        named = named[:1]
    unknown = [name for name in named if name not in compose_services()]
    return f"docker-compose.yml has no service {unknown}" if unknown else None


CHECKERS = {
    "make": check_make,
    "rewards": check_rewards,
    "python": check_python,
    "python3": check_python,
    "celery": check_celery,
    "bash": check_file,
    "sh": check_file,
    "pytest": check_pytest,
    "docker": check_docker,
}


def command_problem(command: Command) -> str | None:
    """What is wrong with a command, naming its file and line; None if it exists."""
    program, args = command.words[0], command.words[1:]
    if program.startswith("./"):
        program, args = "bash", [program[2:]]
    program = program.removeprefix(".venv/bin/")
    if program in OUTSIDE_PROGRAMS:
        return None
    if program not in CHECKERS:
        return (f"unknown program {program} in {where(command.doc, command.number)}: "
                "add a checker or the allow-list")
    problem = CHECKERS[program](command, args)
    return problem and f"{where(command.doc, command.number)}: `{shlex.join(command.words)}`: {problem}"


def test_the_command_reader_finds_commands_of_every_kind():
    # Guards the check below: if the reader found nothing, it would pass.
    programs = {command.words[0] for command in all_commands()}
    assert {"make", "rewards"} <= programs
    assert any(command.words[:2] == ["make", "test"] and command.doc.path == README for command in all_commands())


def test_every_command_in_the_docs_exists():
    broken = [problem for command in all_commands() if (problem := command_problem(command))]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("doc", list(DOCS_READ.values()), ids=lambda doc: doc.name)
def test_every_python_example_is_python(doc):
    import ast

    for block in doc.blocks:
        if block.lang == "python" and block.lines:
            source = "\n".join(line for _, line in block.lines)
            try:
                ast.parse(source)
            except SyntaxError as error:
                raise AssertionError(f"{where(doc, block.lines[0][0] + (error.lineno or 1) - 1)}: {error.msg}")
