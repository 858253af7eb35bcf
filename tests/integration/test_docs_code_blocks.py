"""Every fenced code block of the READMEs and of the documentation site (docs-src/) is tested, so the documentation cannot rot.

* ``python`` blocks run as written, in a fresh directory that holds the files the document defines (a block
  right after ``<!-- file: NAME -->`` is the content of NAME). Paths with ``<placeholders>`` (a run's
  date) are replaced by files this test makes, listed in ``PLACEHOLDER_FILES``.
* ``yaml`` blocks must be such files, read by a python block of the same document (schedules are then
  loaded by ``distiller.file_config`` on the model they are written for).
* ``bash`` blocks: every ``python <script>.py ...`` (or ``python -m distiller.<module> ...``, or
  ``torchrun [flags] <script>.py ...``) command is
  parsed by that script's own ``get_args_parser()``, and the repository paths it names must exist; the sample application's commands
  that train on the embedded digits data from scratch are run for 2 epochs on a 5% subset. Environment
  setup (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``) and variable assignments are
  allowed around them; any other command needs a mark.
* A block that cannot be tested carries ``<!-- not-tested: REASON -->`` right before it.
"""
import ast
import contextlib
import glob
import importlib.util
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass, field

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = sorted(["README.md", "benchmarks/README.md"]
              + [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "examples", "**", "README.md"),
                                                             recursive=True)]
              + [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs-src", "*.md"))])
MARK = re.compile(r"^<!--\s*(not-tested|file):\s*(.*?)\s*-->$")
APP = "examples/classifier_compression/compress_classifier.py"
SETUP_COMMANDS = (("python3", "-m", "venv"), (".",), ("source",), ("pip", "install"))
SHORT_RUN = ["--epochs", "2", "--etrs", "0.05", "--etes", "0.05"]


@dataclass(frozen=True)
class Block:
    """A fenced code block of a markdown document."""
    doc: str
    line: int
    lang: str
    text: str
    marks: dict = field(hash=False)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(doc: str) -> list:
    """The fenced blocks of ``doc`` (a path relative to the repository root), with their marks."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        end = lines.index("```", index + 1)
        previous = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        mark = MARK.match(previous)
        blocks.append(Block(doc, index + 1, fence.group(1), "\n".join(lines[index + 1:end]) + "\n",
                            {mark.group(1): mark.group(2)} if mark else {}))
        index = end + 1
    return blocks


BLOCKS = [block for doc in DOCS for block in read_blocks(doc)]
TESTED = [block for block in BLOCKS if "not-tested" not in block.marks]


def blocks_of(lang: str) -> list:
    return [block for block in TESTED if block.lang == lang]


def test_documents_have_code_blocks():
    assert {"README.md", "examples/README.md", "examples/quantization/README.md"} <= set(DOCS)
    assert {block.lang for block in TESTED} == {"python", "yaml", "bash"}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_every_block_is_tested_or_marked_with_a_reason(block):
    if "not-tested" in block.marks:
        assert block.marks["not-tested"], "give the reason: <!-- not-tested: REASON -->"
        return
    assert block.lang in ("python", "yaml", "bash"), \
        f"a {block.lang or 'plain'} block cannot be tested: mark it <!-- not-tested: REASON -->"
    if block.lang == "yaml":
        name = block.marks.get("file")
        assert name, "a yaml block must be a file that a python block reads: precede it with <!-- file: NAME -->"
        assert any(name in other.text for other in blocks_of("python") if other.doc == block.doc), \
            f"no python block of {block.doc} reads {name}"


# ---------------------------------------------------------------------------------------------- bash


@dataclass
class ScriptCommand:
    """A ``python <script>.py args`` command of a bash block."""
    script: str
    argv: list


def logical_lines(text: str) -> list:
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def expand(token: str, variables: dict) -> str:
    def value(match):
        name = match.group(1) or match.group(2)
        assert name in variables, f"${name} is not defined in the block"
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, token)


def script_commands(block: Block) -> list:
    """The block's ``python <script>.py`` commands, with variables expanded; fails on unknown commands.

    Variables assigned on their own line in an earlier bash block of the document are known, as in the
    reader's shell session.
    """
    variables, commands = {}, []
    for earlier in blocks_of("bash"):
        if earlier.doc == block.doc and earlier.line < block.line:
            variables.update(line.split("=", 1) for line in logical_lines(earlier.text) if re.match(r"^\w+=\S+$", line))
    for line in logical_lines(block.text):
        line = re.sub(r"\$\(([^)]*)\)", "command-output", line)  # $(...) is a run-time value: a placeholder
        tokens = shlex.split(line, comments=True)
        while tokens:
            command = tokens[:tokens.index("&&")] if "&&" in tokens else tokens
            tokens = tokens[len(command) + 1:]
            assignments = [t for t in command if re.match(r"^\w+=", t)]
            command = [expand(t, variables) for t in command[len(assignments):]]
            if not command:  # NAME=value lines define variables for the commands after them
                variables.update(t.split("=", 1) for t in (expand(a, variables) for a in assignments))
            elif command[0] in ("python", "python3") and command[1].endswith(".py"):
                commands.append(ScriptCommand(command[1], command[2:]))
            elif command[0] in ("python", "python3") and command[1] == "-m" and command[2].startswith("distiller."):
                commands.append(ScriptCommand(command[2].replace(".", "/") + ".py", command[3:]))
            elif command[0] == "torchrun":  # torchrun [its --flags] script.py args: the script's args are checked
                script = next(i for i, token in enumerate(command) if token.endswith(".py"))
                commands.append(ScriptCommand(command[script], command[script + 1:]))
            else:
                assert any(tuple(command[:len(s)]) == s for s in SETUP_COMMANDS), \
                    f"{' '.join(command)!r} cannot be checked: mark the block <!-- not-tested: REASON -->"
    return commands


def load_script(path: str):
    """Imports a script of the repository by path (its directory on sys.path, as when it runs); a module of
    the library (``python -m distiller....``) by its name."""
    if path.startswith("distiller/"):
        return importlib.import_module(path[:-len(".py")].replace("/", "."))
    directory = os.path.dirname(os.path.join(ROOT, path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = "docs_" + re.sub(r"\W", "_", path)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def parse(command: ScriptCommand):
    parser = load_script(command.script).get_args_parser()
    parser.error = lambda message: pytest.fail(f"{command.script}: {message} in {' '.join(command.argv)}")
    return parser.parse_args(command.argv)


@pytest.mark.parametrize("block", blocks_of("bash"), ids=lambda b: b.id)
def test_bash_block_commands_parse_and_name_existing_files(block):
    commands = script_commands(block)
    assert commands, "the block runs no script of the repository: mark it <!-- not-tested: REASON -->"
    for command in commands:
        assert os.path.isfile(os.path.join(ROOT, command.script)), f"{command.script} does not exist"
        parse(command)
        for token in command.argv:
            if token.split("/")[0] in ("examples", "benchmarks", "distiller", "tests") and "<" not in token:
                assert os.path.exists(os.path.join(ROOT, token)), f"{token} does not exist"


def short_digits_runs() -> list:
    """The app's commands (deduplicated) that train on digits from scratch, as argv for a short run."""
    runs = []
    for block in blocks_of("bash"):
        try:
            commands = script_commands(block)
        except AssertionError:  # reported by test_bash_block_commands_parse_and_name_existing_files
            continue
        for command in commands:
            if command.script != APP:
                continue
            args = parse(command)
            needs_earlier_run = args.resume_from or args.exp_load_weights_from or getattr(args, "kd_resume", None)
            if args.data is None and not (needs_earlier_run or args.evaluate) and command.argv not in runs:
                runs.append(command.argv)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("argv", short_digits_runs(), ids=lambda argv: " ".join(argv))
def test_app_command_runs_two_short_epochs(run_classifier, argv, tmp_path):
    result = run_classifier(*argv, *SHORT_RUN, "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert result.summary["epochs"] == 2
    with open(os.path.join(result.run_dir, os.path.basename(result.run_dir) + ".log")) as f:
        log = f.read()
    quoted = re.search(r"`(Result: [^`]*?) \.\.\.`", open(os.path.join(ROOT, "README.md")).read()).group(1)
    pattern = re.escape(quoted)
    pattern = re.sub(r"\d+(\\\.\d+)?", lambda m: r"\d+\.\d+" if m.group(1) else r"\d+", pattern)
    assert re.search(pattern, log), f"the README quotes a result line the app no longer prints: {quoted}"


# -------------------------------------------------------------------------------------------- python


def pact_checkpoint(directory: str) -> str:
    """A checkpoint of resnet20_cifar prepared by the PACT w4a8 schedule (what the QAT README loads)."""
    import distiller
    from distiller.apputils import save_checkpoint
    from distiller.models import create_model
    torch.manual_seed(0)
    model = create_model(False, "digits", "resnet20_cifar", device_ids=-1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = os.path.join(ROOT, "examples", "quantization", "quant_aware_train", "resnet20_digits_pact_w4a8.yaml")
    scheduler = distiller.file_config(model, optimizer, schedule)
    return save_checkpoint(0, "resnet20_cifar", model, optimizer, scheduler, dir=directory)


# Paths of a documented run (with a <placeholder>) -> a function(directory) that makes such a file.
PLACEHOLDER_FILES = {"logs/resnet20_digits_pact_w4a8___<date>/checkpoint.pth.tar": pact_checkpoint}


def check_own_loop(namespace: dict):
    """README's own training loop: a checkpoint per epoch in runs/, and AGP reached its 80%."""
    import distiller
    assert os.path.isfile(os.path.join("runs", "checkpoint.pth.tar"))
    for name in ("conv1.weight", "conv2.weight", "fc1.weight"):
        assert distiller.sparsity(namespace["model"].get_parameter(name)) == pytest.approx(0.80, abs=0.01)


def check_quantized_levels(namespace: dict):
    """The QAT README's check: at most 16 weight values per channel in the 4-bit layers, 256 in the 8-bit ones."""
    levels = namespace["levels"]
    assert levels["conv1"] <= 256 and levels["fc"] <= 256
    assert len(levels) == 22 and all(count <= 16 for name, count in levels.items() if name not in ("conv1", "fc"))


# What a python block must have done, keyed by (document, a line of the block).
POSTCONDITIONS = {
    ("README.md", 'scheduler = distiller.file_config(model, optimizer, "schedule.yaml")'): check_own_loop,
    ("examples/quantization/README.md", "levels = {name: max("): check_quantized_levels,
}


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks_of("python"), ids=lambda b: b.id)
def test_python_block_runs_as_written(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for other in TESTED:
        if other.doc == block.doc and "file" in other.marks:
            (tmp_path / other.marks["file"]).write_text(other.text)
    source = block.text
    for placeholder in set(re.findall(r"[\"']([^\"']*<\w+>[^\"']*)[\"']", source)):
        assert placeholder in PLACEHOLDER_FILES, f"add a function that makes {placeholder} to PLACEHOLDER_FILES"
        source = source.replace(placeholder, PLACEHOLDER_FILES[placeholder](str(tmp_path / "made")))
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, block.id, "exec"), namespace)
    checks = [check for (doc, line), check in POSTCONDITIONS.items() if doc == block.doc and line in block.text]
    for check in checks:
        check(namespace)


def test_every_postcondition_names_a_block():
    for doc, line in POSTCONDITIONS:
        assert any(b.doc == doc and line in b.text for b in blocks_of("python")), f"{doc}: no block has {line!r}"


# ------------------------------------------------------------------------------------ quoted numbers


def paragraphs_citing(doc: str, cited: str) -> list:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return [p for p in re.split(r"\n\s*\n", f.read()) if cited in p and not p.lstrip().startswith("```")]


@pytest.mark.parametrize("doc", [d for d in DOCS if d != "benchmarks/README.md"])
def test_measured_numbers_quoted_from_the_benchmarks_are_the_benchmarks_readmes(doc):
    with open(os.path.join(ROOT, "benchmarks", "README.md"), encoding="utf-8") as f:
        source = f.read()
    for paragraph in paragraphs_citing(doc, "benchmarks/README.md"):
        for number in re.findall(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+", paragraph):
            assert number in source, f"{doc} quotes {number}, which benchmarks/README.md does not have"


# ------------------------------------------------------------------------------------------- claims

# Features the package description may name -> a public name that must exist for each.
FEATURES = {"pruning": "distiller.pruning.AutomatedGradualPruner",
            "regularization": "distiller.regularization.GroupLassoRegularizer",
            "quantization": "distiller.quantization.PostTrainLinearQuantizer",
            "thinning": "distiller.thinning.remove_filters",
            "knowledge distillation": "distiller.KnowledgeDistillationPolicy"}
# Distiller names the README says exist, and those it says are missing.
README_PRESENT = ["distiller.CompressionScheduler", "distiller.file_config", "distiller.pruning.AutomatedGradualPruner",
                  "distiller.quantization.PostTrainLinearQuantizer", "distiller.apputils.save_checkpoint",
                  "distiller.remove_filters", "distiller.model_summaries", "distiller.KnowledgeDistillationPolicy",
                  "distiller.greedy_pruner"]
README_MISSING: list = []


def exists(dotted: str) -> bool:
    """Whether ``dotted`` is an importable module or an attribute of one."""
    module, _, attribute = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attribute) or bool(importlib.util.find_spec(dotted))
    except ImportError:
        return False


def setup_description() -> str:
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == "description"))


def test_package_description_names_only_implemented_features():
    description = setup_description().lower()
    named = [feature for feature in FEATURES if feature in description]
    assert named, description
    assert [feature for feature in named if not exists(FEATURES[feature])] == []


def test_readme_compatibility_statement_is_true():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for name in README_PRESENT + README_MISSING:
        assert f"`{name}`" in readme, f"the README no longer names {name}: update README_PRESENT/README_MISSING"
    assert [name for name in README_PRESENT if not exists(name)] == []
    assert [name for name in README_MISSING if exists(name)] == [], "now implemented: update the README"
