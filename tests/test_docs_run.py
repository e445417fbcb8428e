"""Every shell command and Python block in README.md and docs/ runs, in a folder that holds what the docs name.

How a page is read, top to bottom, in a folder of its own:
- a code block whose first line is `# NAME.py` or `# NAME.yml` (NAME without spaces) is that file: it is written;
- a `bash` block is run command by command (`\\` continues a line, `&&` chains, `export` sets the environment of
  the commands after it); a command exits 0 unless its comment says `# exit N`; a comment line right after a
  command that starts `# ednaml:` is output the command must print;
- a `python` block is run as a script;
- an untagged block after an `<!-- output -->` line is what the last command printed: each of its lines
  (`<...>` stands for any text, `...` for lines left out) is matched, in order, against that output.

The placeholders the docs use stand for what a reader would have: RUN, RUN_A, RUN_B (run folders of a short
digits run), `<run_id>`, my_images/ (a folder of class subfolders of real images) and its labels.csv, cfg.yml
(configs/digits.yml), old.yml (a config written for the original EdnaML).

Runs are shortened, never changed in meaning: a training command gets one epoch of a few batches; a benchmark
one round of one epoch. What this machine cannot run is run as far as it can go, and the test says how:
`pip install` is checked against pyproject.toml and `python3 -m venv` and `python -m pytest` are left to CI,
whose own setup runs them; a command
for GPUs or several machines (`--trainer.devices 4` without `accelerator cpu`, `num_nodes`, `torchrun`,
`srun`) resolves its config with `--print_config`; `python -m bench --gpu` says that there is no GPU. A block
after `<!-- not run: REASON -->` is skipped: only those in NOT_RUN, each needing what no test machine has.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
import torch
from helpers import CONFIGS, EDNAML, FEW_BATCHES, ROOT, digit_images

pytestmark = pytest.mark.e2e

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHORT = ["--EXECUTION.EPOCHS", "1", *FEW_BATCHES]
TRAINS = {"fit", "sweep", "validate", "test"}
FILE_LINE = re.compile(r"^# ([\w./-]+\.(?:py|ya?ml))$")
GPU = torch.cuda.is_available()
NOT_RUN = {("sweeps.md", "a SLURM cluster with GPUs and a PostgreSQL server")}


@dataclass
class Block:
    page: Path
    line: int
    tag: str
    text: str
    output: bool = False  # an untagged block after <!-- output -->
    not_run: str = ""  # the reason given by a <!-- not run: REASON --> line before it


def blocks(page: Path) -> list[Block]:
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            tag, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            text = "\n".join(lines[start + 1 : end])
            reason = re.fullmatch(r"<!-- not run: (.+) -->", before.strip())
            found.append(
                Block(
                    page,
                    start + 1,
                    tag,
                    text,
                    output=not tag and before.strip() == "<!-- output -->",
                    not_run=reason[1] if reason else "",
                )
            )
            i = end
        i += 1
    return found


@dataclass
class Page:
    """One page's folder and what its commands have printed."""

    folder: Path
    places: dict[str, str]
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, "WANDB_MODE": "offline"})
    printed: str = ""
    failures: list[str] = field(default_factory=list)

    def fill(self, text: str) -> str:
        for name in sorted(self.places, key=len, reverse=True):
            text = re.sub(
                rf"(?<![\w<]){re.escape(name)}(?![\w>])" if name.isidentifier() else re.escape(name),
                lambda _, name=name: self.places[name],
                text,
            )
        return text


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """What the docs assume a reader has: two short digits runs, an image folder with its manifest, configs."""
    world = tmp_path_factory.mktemp("world")
    for name in ("configs", "examples"):
        shutil.copytree(ROOT / name, world / name)
    shutil.copy(CONFIGS / "digits.yml", world / "cfg.yml")
    shutil.copy(CONFIGS / "digits-sweep.yml", world / "space.yml")
    for name in ("old.yml", "old-ednaml.yml"):
        shutil.copy(ROOT / "tests" / "legacy_configs" / "digits-original-style.yml", world / name)
    digit_images(world / "my_images")
    manifest = (world / "my_images" / "manifest.csv").read_text().splitlines()
    (world / "my_images" / "manifest.csv").unlink()
    (world / "labels.csv").write_text("\n".join([manifest[0], *(f"my_images/{row}" for row in manifest[1:])]) + "\n")
    for _ in range(2):
        done = subprocess.run(
            [str(EDNAML), "fit", "--config", "configs/digits.yml", *SHORT],
            cwd=world,
            env={**os.environ, "WANDB_MODE": "disabled"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    run_a, run_b = sorted(p for p in (world / "runs").glob("*/*") if p.is_dir())
    places = {"RUN_A": str(run_a), "RUN_B": str(run_b), "RUN_OR_CKPT": str(run_a), "RUN": str(run_a)}
    places["<run_id>"] = run_a.name
    return world, places


def pip_install(argv: list[str]) -> str | None:
    """What is wrong with a documented `pip install`: an extra pyproject.toml lacks, or torch pins that differ."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    readme = (ROOT / "README.md").read_text()
    for word in argv[2:]:
        named = re.fullmatch(r"(?:\.|ednaml)\[([\w,]+)\]", word.strip("'\""))
        if named and set(named[1].split(",")) - extras:
            return f"extras {sorted(set(named[1].split(',')) - extras)} are not in pyproject.toml"
        if word.startswith(("torch==", "torchvision==")) and word not in readme:
            return f"{word} is not the README's pin"
    return None


def commands(text: str) -> list[tuple[str, list[str]]]:
    """A bash block's commands, each with the `# ednaml:` lines that follow it."""
    out: list[tuple[str, list[str]]] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("# ednaml:") and out:
            out[-1][1].append(line.strip()[2:])
            continue
        if line.startswith("#") or not line.strip():
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            out.extend((part.strip(), []) for part in pending.split("&&"))
            pending = ""
    return out


def shell_words(command: str) -> list[str]:
    return shlex.split(command.replace("$(which ednaml)", "ednaml"), comments=True)


def needs_hardware(argv: list[str]) -> bool:
    """A run for GPUs or several machines."""
    joined = " ".join(argv)
    cpu = "--trainer.accelerator cpu" in joined
    devices = re.search(r"--trainer\.devices (\d+)", joined)
    return (devices is not None and not cpu) or "--trainer.num_nodes" in joined or "accelerator gpu" in joined


def run(page: Page, argv: list[str], where: str) -> subprocess.CompletedProcess | None:
    """One documented command, shortened or run as far as this machine allows; None when it is only checked."""
    program, *args = argv
    if program in ("torchrun", "srun"):
        inner = next(i for i, word in enumerate(args) if word.endswith("ednaml"))
        return run(page, args[inner:], where)
    if program == "export":
        name, _, value = args[0].partition("=")
        page.env[name] = os.path.expandvars(value)
        return None
    if program.endswith("pip") or program.endswith("pip3"):
        problem = pip_install(argv)
        if problem:
            page.failures.append(f"{where}: {problem}")
        return None
    if argv[:3] == ["python3", "-m", "venv"] or argv[1:3] == ["-m", "pytest"]:  # CI's setup; the suite running this
        return None
    if program.endswith("ednaml"):
        full = [str(EDNAML), *args]
        if needs_hardware(args):
            full.append("--print_config")
        elif args and args[0] in TRAINS and "--print_config" not in args and "--best" not in args:
            full += SHORT + (["--EXECUTION.EPOCHS", "2"] if "--resume" in args else [])
    elif program.endswith("python") and args[:1] == ["-m"] and args[1] in ("bench", "bench.inprocess"):
        full = [sys.executable, *args, "--epochs", "1"] + ([] if args[1] == "bench.inprocess" else ["--repeats", "1"])
    elif program.endswith("py-spy"):
        full = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), *args]
        inner = full.index("--") + 1
        full[inner:] = [str(EDNAML), *full[inner + 1 :], *SHORT]
    else:
        page.failures.append(f"{where}: no way to run {program!r} here")
        return None
    env = {**page.env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(full, cwd=page.folder, env=env, capture_output=True, text=True, timeout=900)


def expect(page: Page, done: subprocess.CompletedProcess, argv: list[str], where: str, status: int) -> None:
    """The command did what the docs say it does, ending with `status`."""
    if "--gpu" in argv and not GPU:
        if done.returncode != 2 or "GPU" not in done.stderr:
            page.failures.append(f"{where}: without a GPU, {argv} should refuse naming it:\n{done.stderr[-1500:]}")
    elif done.returncode != status:
        page.failures.append(f"{where}: {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}")


def matches(expected: str, printed: str) -> str | None:
    """The first line of an output block that the printed output lacks, in order."""
    lines = printed.splitlines()
    at = 0
    for want in expected.splitlines():
        if want.strip() in ("", "..."):
            continue
        pattern = re.compile(".+?".join(re.escape(part) for part in re.split(r"<[^>]+>", want.strip())))
        found = next((i for i in range(at, len(lines)) if pattern.search(lines[i])), None)
        if found is None:
            return want
        at = found + 1
    return None


def read_page(path: Path, folder: Path, places: dict[str, str]) -> list[str]:
    page = Page(folder, places)
    for block in blocks(path):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{block.line}"
        first = block.text.splitlines()[0] if block.text else ""
        named = FILE_LINE.match(first)
        if block.not_run:
            continue
        if named and block.tag in ("python", "yaml", "yml"):
            (folder / named[1]).write_text(page.fill(block.text) + "\n")
        elif block.tag == "bash":
            for command, said in commands(page.fill(block.text)):
                argv = shell_words(command)
                done = run(page, argv, where)
                if done is None:
                    continue
                status = re.search(r"#\s*exit (\d+)", command)
                expect(page, done, argv, where, int(status[1]) if status else 0)
                page.printed = done.stdout + done.stderr
                for line in said:
                    if line not in page.printed:
                        page.failures.append(f"{where}: {' '.join(argv)} did not print {line!r}")
        elif block.tag == "python":
            script = folder / f"block_{block.line}.py"
            script.write_text(page.fill(block.text))
            done = subprocess.run(
                [sys.executable, str(script)], cwd=folder, env=page.env, capture_output=True, text=True, timeout=900
            )
            if done.returncode != 0:
                page.failures.append(f"{where}: the Python block failed:\n{done.stderr[-3000:]}")
            page.printed = done.stdout + done.stderr
        elif block.output:
            missing = matches(block.text, page.printed)
            if missing is not None:
                page.failures.append(
                    f"{where}: the output shown has {missing!r}; the command printed:\n{page.printed[-3000:]}"
                )
    return page.failures


def test_only_the_blocks_that_need_a_cluster_are_left_unrun():
    left = {(block.page.name, block.not_run) for page in PAGES for block in blocks(page) if block.not_run}
    assert left == NOT_RUN


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_every_command_and_python_block_on_the_page_runs(path, world, tmp_path):
    source, places = world
    folder = tmp_path / "page"
    shutil.copytree(source, folder, symlinks=True)
    moved = {name: value.replace(str(source), str(folder)) for name, value in places.items()}
    failures = read_page(path, folder, moved)
    assert not failures, "\n\n".join(failures)


def test_the_reader_finds_a_failing_command_and_output_the_command_did_not_print(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nednaml list loss\n# ednaml: nothing like this\nednaml list no-such-kind\n```\n\n"
        "```bash\nednaml list loss\n```\n"
        "<!-- output -->\n```\nloss:\n  <name> <what it does>\nnot printed at all\n```\n"
    )
    (tmp_path / "folder").mkdir()
    failures = read_page(page, tmp_path / "folder", {})
    assert len(failures) == 3, failures
    assert "did not print 'ednaml: nothing like this'" in failures[0]
    assert "no-such-kind exited 2" in failures[1]
    assert "the output shown has 'not printed at all'" in failures[2]
