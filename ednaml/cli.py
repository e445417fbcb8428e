"""`ednaml fit | validate | test | predict | list`: the command line, with Lightning's flag conventions."""

from __future__ import annotations

import gc
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ednaml.errors import UsageError, did_you_mean

# C0 and C1 control characters but tab and newline (an escape sequence can clear the screen or retitle the
# terminal; a carriage return hides what came before it), and the bidirectional overrides that reorder text
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text as it is safe to show on a terminal: control characters escaped (ESC as \\x1b), lines and tabs kept.
    Run names, config values and messages come from files that may be someone else's."""
    return _UNPRINTABLE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def shown(text: str) -> str:
    """Text as the command line shows it, whatever shows it (print, a warning, a traceback): its secrets masked
    as a run folder's are (it may quote a value), then through printable()."""
    from ednaml.tracking.secrets import scrub_text

    return printable(scrub_text(text))


def say(*values: Any, file: Any = None, end: str = "\n", flush: bool = False) -> None:
    """print(), for everything the command line prints, through shown()."""
    print(shown(" ".join(str(v) for v in values)), file=file, end=end, flush=flush)


STAGES = ("fit", "validate", "test", "predict")


@dataclass(frozen=True)
class Flag:
    """One option of the command line: `metavar` None is a switch; `repeat` gathers every use into a list;
    `override` makes the value a config key's (--ckpt_path, --seed_everything), joining the overrides."""

    help: str
    metavar: str | None = None
    repeat: bool = False
    short: str | None = None
    override: bool = False


FLAGS: dict[str, Flag] = {
    "config": Flag(
        "a config file; several merge left to right (mappings merge, lists replace; see docs/config.md for "
        "!replace, !delete and swapping a component)",
        "FILE",
        repeat=True,
        short="-c",
    ),
    "print_config": Flag("print the resolved config (it loads again as the same config) and exit"),
    "ckpt_path": Flag("checkpoint to start from (fit) or to evaluate", "PATH", override=True),
    "resume": Flag("continue an interrupted run (its folder or run id) from its last checkpoint", "RUN"),
    "data": Flag(
        "predict: new inputs (a file or folder) instead of the test split; init: the data to configure", "PATH"
    ),
    "output": Flag(
        "where to write: predict's records (.csv, .jsonl, .parquet) and migrate's config, never over a file; "
        "schema's JSON",
        "FILE",
        short="-o",
    ),
    "seed_everything": Flag("seed for every RNG (default: one is picked and recorded)", "N", override=True),
    "import": Flag("import custom components before names are resolved (repeatable)", "FILE|MODULE", repeat=True),
    "trust": Flag(
        "let a config from a checkpoint or run folder name code (EXECUTION.IMPORTS, dotted component paths, "
        "trainer class_paths and callables) and choose where the run goes (runs root, backups, W&B online); "
        "without it such a config is data only (docs/trust.md). sync: send artifact files that a run's W&B "
        "log names outside its run folder"
    ),
    "root": Flag("the runs folder runs and run ids are found in (default ./runs)", "ROOT"),
    "experiment": Flag("runs of experiments matching this wildcard pattern", "PATTERN"),
    "status": Flag("runs with this status (running, finished, failed, interrupted)", "STATUS"),
    "where": Flag("runs whose config has KEY=VALUE, or whose final METRIC>NUMBER (repeatable)", "COND", repeat=True),
    "json": Flag("print JSON"),
    "dry-run": Flag("list what would be sent, send nothing"),
    "format": Flag("export as torchscript or onnx", "FORMAT"),
    "sweep": Flag("the search space (SPACE.yml); runs: only the trials of this sweep", "SPACE"),
    "trials": Flag("trials to run (default: the space's TRIALS)", "N"),
    "storage": Flag("an Optuna RDB URL or journal file shared by sweeps on several machines", "URL"),
    "study": Flag("the study's name (default: from the config)", "NAME"),
    "parallel": Flag("trials at a time, one GPU each", "K"),
    "best": Flag("the best trial of sweep NAME (its config with --print_config)", "NAME"),
    "debug": Flag("show Python tracebacks"),
}

_RUN = ("config", "print_config", "ckpt_path", "seed_everything", "import", "trust", "debug")


@dataclass(frozen=True)
class Command:
    """One subcommand: its usage, what it does, the flags it takes, what its words are (None: it takes none),
    whether it takes config overrides (--KEY.PATH VALUE, KEY=VALUE, ~KEY), and the function that runs it."""

    usage: str
    help: str
    flags: tuple[str, ...]
    words: str | None = None
    overrides: bool = False
    run: str | Callable[[dict[str, Any]], int] = "_run"  # a function of this module by name, or any function


COMMANDS: dict[str, Command] = {
    "fit": Command(
        "--config CFG.yml [--config MORE.yml] [options] [--KEY.PATH VALUE ...] | --resume RUN",
        "train (after one validation pass unless EXECUTION.SKIPEVAL), then test",
        _RUN + ("resume", "root"),
        overrides=True,
    ),
    "validate": Command("--config CFG.yml [options]", "evaluate on the validation split", _RUN, overrides=True),
    "test": Command(
        "--config CFG.yml [options]",
        "evaluate on the test split (--ckpt_path alone: the checkpoint's own config)",
        _RUN,
        overrides=True,
    ),
    "predict": Command(
        "RUN_OR_CKPT [--data PATH] [--output FILE] [options]",
        "one record per input (DEPLOYMENT.DEPLOY: class, probability, top-k) for new data (--data: an image, "
        "text or video file or folder, no labels needed) or the test split, from a run's best (else last) "
        "checkpoint or a checkpoint file; a manifest names what produced them",
        _RUN + ("data", "output", "root"),
        words="RUN_OR_CKPT",
        overrides=True,
    ),
    "check": Command(
        "--config CFG.yml [...]",
        "build everything and try one batch, one backward and one optimizer step, without training; print the "
        "data, model, parameter groups, learning-rate schedule, checkpoint plan and run folder; exit 0 when "
        "ready to train, 2 otherwise",
        ("config", "import", "debug"),
        overrides=True,
        run="_check",
    ),
    "sweep": Command(
        "--config CFG.yml --sweep SPACE.yml [--trials N] [--study NAME] [--storage URL] [--parallel K] [...] | "
        "--best NAME [--print_config]",
        "an Optuna study over config keys (SPACE.yml: SWEEP, METRIC, DIRECTION, TRIALS, SAMPLER, PRUNER); each "
        "trial an `ednaml fit` run with the sampled values; results in sweeps/NAME (sweep.json, trials.csv, "
        "report.html); the same command again continues the study; --storage: shared by sweeps on several "
        "machines; --parallel K: K trials at a time, one GPU each; --best NAME: the best trial (its config)",
        ("config", "import", "sweep", "trials", "storage", "study", "parallel", "best", "print_config", "debug"),
        overrides=True,
        run="_sweep",
    ),
    "migrate": Command(
        "OLD.yml [-o NEW.yml]",
        "a config written for the original EdnaML as this version's, with a comment for each key that changed "
        "or was dropped and what `check` would still report (-o NEW.yml: to a file, never over one)",
        ("output", "debug"),
        words="OLD.yml",
        run="_migrate",
    ),
    "init": Command(
        "--data FOLDER|MANIFEST.csv [-o cfg.yml]",
        "a commented starter config for a folder of images (a subfolder per class, or train/ val/ test/ of them) "
        "or a CSV manifest: its reader, classes, input size, a model and a schedule sized to the data; checked as "
        "`ednaml check` checks it (-o cfg.yml: to a new file, never over one)",
        ("data", "output", "debug"),
        run="_init",
    ),
    "schema": Command(
        "[-o ednaml.schema.json] [--import FILE]",
        "the JSON Schema of a config, for the editor: every section and key, the names each key may give and each "
        "component's arguments, the `trainer:` section (-o FILE: to a file, over an earlier schema only)",
        ("output", "import", "debug"),
        run="_schema",
    ),
    "list": Command(
        "[KIND] [PATTERN] [--import FILE]   (ednaml list KIND NAME: its arguments)",
        "the registered components, by kind (datareader, model, loss, ...)",
        ("import", "config", "debug"),
        words="KIND PATTERN",
        run="_list",
    ),
    "runs": Command(
        "[ROOT] [--experiment PATTERN] [--status STATUS] [--sweep NAME] [--where KEY=VALUE | METRIC>NUMBER ...] "
        "[--json]",
        "the runs under ROOT (default ./runs), newest first",
        ("root", "experiment", "status", "sweep", "where", "json", "debug"),
        words="ROOT",
        run="_runs",
    ),
    "diff": Command(
        "RUN_A RUN_B [--root ROOT] [--json]",
        "what differs between two runs (folders or run ids) or configs: config, components, versions, data, "
        "final metrics",
        ("root", "json", "debug"),
        words="RUN_A RUN_B",
        run="_diff",
    ),
    "reproduce": Command(
        "RUN [--root ROOT]",
        "a new run from RUN's resolved config and seed, then its diff against RUN",
        ("root", "import", "trust", "debug"),
        words="RUN",
        run="_reproduce",
    ),
    "sync": Command(
        "RUN [RUN ...] [--root ROOT] [--dry-run] [--trust]",
        "upload offline W&B runs (every process of a resumed run) with `wandb sync`, also from a run folder "
        "moved to another machine; only files inside the run folder are sent; --dry-run lists what would be sent",
        ("root", "dry-run", "trust", "debug"),
        words="RUN",
        run="_sync",
    ),
    "export": Command(
        "RUN_OR_CKPT --format torchscript|onnx [--output DIR]",
        "the model of a run (its best, else last checkpoint) or checkpoint as TorchScript or ONNX, runnable "
        "without EdnaML, with model.json (inputs, outputs, label names, preprocessing) and the tokenizer beside "
        "it; checked against the checkpoint on an example input",
        ("format", "output", "root", "import", "trust", "debug"),
        words="RUN_OR_CKPT",
        run="_export",
    ),
}

OVERRIDES_HELP = "\n".join(
    (
        "  --trainer.NAME VALUE     any lightning.Trainer argument (--trainer.devices 2, --trainer.precision "
        "bf16-mixed)",
        "  --SECTION.KEY VALUE      any config key by its dotted path (--EXECUTION.EPOCHS 3, --OPTIMIZER.0.BASE_LR "
        "0.01)",
        "  SECTION.KEY=VALUE        the same, as Hydra writes it (EXECUTION.EPOCHS=3)",
        "  ~SECTION.KEY             remove a key the config files set (~MODEL.MODEL_KWARGS.width)",
        "",
        "Values are read as YAML 1.2: 3 and 3e-3 are numbers, [8, 8] a list, null nothing.",
    )
)


def _wrapped(text: str, indent: int, width: int = 110) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width - indent) or [""]


def usage() -> str:
    """`ednaml --help`, made from COMMANDS and FLAGS (without importing the parser: it stays instant)."""
    commands = enumerate(COMMANDS.items())
    lines = [f"{'usage:' if i == 0 else '      '} ednaml {name} {c.usage}" for i, (name, c) in commands]
    lines += ["", "Run an experiment described by an EdnaML config on a Lightning Trainer.", "", "commands:"]
    for name, command in COMMANDS.items():
        text = _wrapped(command.help, 13)
        lines += [f"  {name:<10} {text[0]}"] + [f"{'':13}{line}" for line in text[1:]]
    lines += ["", "options (`ednaml COMMAND --help`: the ones COMMAND takes):"]
    for name, flag in FLAGS.items():
        lines += _flag_lines(name, flag)
    lines += ["  -h, --help               show this help (with a command: its own, for a stage every --trainer.*)"]
    return "\n".join([*lines, "", OVERRIDES_HELP])


def _flag_lines(name: str, flag: Flag) -> list[str]:
    head = (f"{flag.short}, " if flag.short else "") + f"--{name}" + (f" {flag.metavar}" if flag.metavar else "")
    text = _wrapped(flag.help, 27)
    first = f"  {head:<24} {text[0]}" if len(head) <= 24 else f"  {head}\n{'':27}{text[0]}"
    return [first] + [f"{'':27}{line}" for line in text[1:]]


def command_help(name: str) -> str:
    """`ednaml COMMAND --help`: its usage, what it does and its options, from its declaration."""
    command = COMMANDS[name]
    lines = [f"usage: ednaml {name} {command.usage}", "", *_wrapped(command.help, 0), "", "options:"]
    for flag in command.flags:
        lines += _flag_lines(flag, FLAGS[flag])
    lines += ["  -h, --help               show this help"]
    return "\n".join(lines + (["", OVERRIDES_HELP] if command.overrides else []))


def _parser(name: str) -> Any:
    """The jsonargparse parser of one subcommand, declared by COMMANDS[name] and FLAGS."""
    from jsonargparse import ArgumentParser

    command = COMMANDS[name]
    parser = ArgumentParser(prog=f"ednaml {name}", exit_on_error=False, print_config=None, add_help=False)
    for flag in command.flags:
        declared = FLAGS[flag]
        names = [f"--{flag}"] + ([declared.short] if declared.short else [])
        dest = _dest(flag).replace("-", "_")
        if declared.metavar is None:
            parser.add_argument(*names, dest=dest, action="store_true", help=declared.help)
        elif declared.repeat:
            parser.add_argument(*names, dest=dest, action="append", type=str, default=[], metavar=declared.metavar)
        else:
            parser.add_argument(*names, dest=dest, type=str, default=None, metavar=declared.metavar)
    return parser


def _is_override(key: str) -> bool:
    """A flag that sets a config key (--EXECUTION.EPOCHS, --trainer.devices), not an option of the command."""
    return "." in key or key.isupper() or key == "trainer"


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """The command, its flags (by COMMANDS' declaration, parsed by jsonargparse), its words and the config
    overrides (dotted path, value), in the order given."""
    if not argv or argv[0] in ("-h", "--help"):
        return {"command": "help"}
    if argv[0] in ("--version", "version"):
        return {"command": "version"}
    name, rest = argv[0], list(argv[1:])
    if name not in COMMANDS:
        raise UsageError(
            f"unknown command {name!r}" + did_you_mean(name, list(COMMANDS), f"; commands are {', '.join(COMMANDS)}")
        )
    command = COMMANDS[name]
    flags, overrides, words, helped = _split(name, rest)
    parsed = _parser(name).parse_args(flags).as_dict()
    args: dict[str, Any] = {_dest(flag): [] if f.repeat else None if f.metavar else False for flag, f in FLAGS.items()}
    args |= {_dest(flag): parsed[_dest(flag).replace("-", "_")] for flag in command.flags}
    where = []
    for value in args["where"]:
        match = re.fullmatch(r"\s*([^<>=!\s]+)\s*(>=|<=|!=|=|>|<)\s*(.*)", value)
        if not match:
            raise UsageError(
                f"--where {value!r}: write it as KEY=VALUE or METRIC>NUMBER, e.g. --where OPTIMIZER.0.BASE_LR=0.001 "
                "or --where 'test/accuracy>0.9'"
            )
        where.append(match.groups())
    return args | {"command": name, "overrides": overrides, "help": helped, "where": where, "positional": words}


def _dest(flag: str) -> str:
    """The key a flag's value is under in parse_args' result: --import's `imports`, else its name."""
    return "imports" if flag == "import" else flag


def _split(name: str, rest: list[str]) -> tuple[list[str], list[tuple[str, Any]], list[str], bool]:
    """argv after the command as (the command's own flags, for its parser; config overrides; words; whether
    --help was asked), each flag checked against the command's declaration."""
    command = COMMANDS[name]
    flags: list[str] = []
    overrides: list[tuple[str, Any]] = []
    words: list[str] = []
    helped = False
    shorts = {FLAGS[f].short: f"--{f}" for f in command.flags if FLAGS[f].short}
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token in ("-h", "--help"):
            helped = True
        elif not token.startswith("-"):
            override = re.fullmatch(r"([A-Za-z_][\w.\[\]]*)=(.*)", token, re.S)
            if command.overrides and re.fullmatch(r"~[A-Za-z_][\w.\[\]]*", token):  # Hydra's ~KEY deletes a key
                overrides.append((token[1:], "!delete"))
            elif command.overrides and override:  # Hydra's KEY=VALUE
                overrides.append(override.groups())
            elif command.words:
                words.append(token)
            else:
                raise UsageError(
                    f"unexpected argument {token!r}: write an override as --KEY.PATH VALUE or KEY.PATH=VALUE, "
                    "and a config as --config FILE"
                    if command.overrides
                    else f"unexpected argument {token!r}: `ednaml {name}` takes no words"
                )
        else:
            flag, eq, value = token.partition("=")
            flag = shorts.get(flag, flag)
            key = flag[2:]
            declared = FLAGS.get(key) if key in command.flags else None
            if declared is None and not (command.overrides and _is_override(key)):
                raise UsageError(_unknown_option(name, key))
            if declared is not None and declared.metavar is None:
                if eq:
                    raise UsageError(f"{flag} takes no value")
                flags.append(flag)
                continue
            if not eq:
                if i >= len(rest) or (rest[i].startswith("--") and len(rest[i]) > 2):
                    raise UsageError(f"{flag} needs a value")
                value, i = rest[i], i + 1
            if declared is None or declared.override:
                overrides.append((key, value))
            else:
                flags.append(f"{flag}={value}")
    return flags, overrides, words, helped


def _unknown_option(name: str, key: str) -> str:
    """The message for an option `ednaml NAME` does not take: another command's, or a misspelling."""
    command = COMMANDS[name]
    if key in FLAGS:
        takes = ", ".join(f"--{f}" for f in command.flags)
        return f"`ednaml {name}` does not take --{key} (it takes {takes})"
    options = list(command.flags) + (["trainer.<arg>", "SECTION.KEY"] if command.overrides else [])
    return f"unknown option --{key}" + did_you_mean(key, options, form=lambda option: f"--{option}")


def _trainer_help() -> str:
    import inspect

    from lightning.pytorch import Trainer

    lines = ["\nlightning.Trainer arguments (as --trainer.NAME VALUE or under trainer: in a config):"]
    for p in inspect.signature(Trainer.__init__).parameters.values():
        if p.name != "self":
            lines.append(f"  --trainer.{p.name:<32} default: {p.default!r}")
    return "\n".join(lines)


def _arguments(kind: str, obj: Any) -> list[str]:
    """The config keys a component's arguments go under, each argument with its type and default."""
    import inspect

    lines = []
    from ednaml import kinds

    for key, part in kinds.KINDS[kind].kwargs_at or (("arguments", None),):
        supplied = kinds.arguments(part or kind).supplied
        target = getattr(obj, part) if part else obj
        try:
            parameters = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters.values()
        except (TypeError, ValueError):
            continue
        shown = []
        for p in parameters:
            if p.name in ("self", "cls") + tuple(supplied) or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                shown.append(f"    **{p.name}  (any other keyword)")
                continue
            text = f"    {p.name}"
            if p.annotation is not inspect.Parameter.empty:
                text += f": {p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)}"
            text += "  (required)" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
            shown.append(text)
        lines += [f"  {key}:"] + (shown or ["    (none)"])
    return lines


def _list(args: dict[str, Any]) -> int:
    from ednaml import kinds, registry
    from ednaml.config.load import read_yaml
    from ednaml.config.paths import anchor

    sources = list(args["imports"])
    for config in args["config"]:  # a config's EXECUTION.IMPORTS, relative to it, as a run finds them
        execution = read_yaml(config).get("EXECUTION")
        if isinstance(execution, dict) and isinstance(execution.get("IMPORTS"), list):
            found = {"EXECUTION": {"IMPORTS": list(execution["IMPORTS"])}}
            anchor(
                found,
                [("EXECUTION", "IMPORTS")],
                {("EXECUTION", "IMPORTS"): str(config)},
                [config],
                lambda message: None,
            )
            sources += found["EXECUTION"]["IMPORTS"]
    if sources:
        try:
            registry.import_sources(sources)
        except (ImportError, FileNotFoundError, SyntaxError) as err:
            raise UsageError(f"--import: cannot import {err}") from None
    kind = args["positional"][0] if args["positional"] else None
    pattern = args["positional"][1] if len(args["positional"]) > 1 else "*"
    kind = kinds.RENAMED_KINDS.get(kind, kind)  # `ednaml list trainer`, the original's name for step logic
    if kind and kind not in kinds.KINDS:
        if "*" in kind or kind[:1].isupper():
            kind, pattern = None, kind
        else:
            raise UsageError(
                f"unknown kind {kind!r}"
                + did_you_mean(kind, list(kinds.KINDS), f"; kinds are {', '.join(kinds.KINDS)}")
            )
    if kind and len(args["positional"]) > 1 and not any(c in pattern for c in "*?["):  # one component: its arguments
        try:
            obj = registry.get(kind, pattern)
        except registry.RegistryError as err:
            raise UsageError(str(err)) from None
        say(f"{kind} {pattern}: {registry.describe(obj)}".rstrip())
        say("\n".join(_arguments(kind, obj)))
        return 0
    for k, rows in registry.catalogue(kind, pattern).items():
        if not rows and kind is None:
            continue
        say(f"{k}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, doc in rows:
            say(f"  {name:<{width}}  {doc}".rstrip())
    return 0


_python_formatwarning = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """Config warnings as one plain line; every other warning as Python shows it."""
    from ednaml.config.load import ConfigWarning

    if issubclass(category, ConfigWarning):
        return shown(f"ednaml: warning: {message}") + "\n"
    return _python_formatwarning(message, category, filename, lineno, line)


def _runs(args: dict[str, Any]) -> int:
    import json

    from ednaml.config.load import parse_value
    from ednaml.tracking.browse import find_runs, format_table, matches, table_rows

    root = args["positional"][0] if args["positional"] else (args["root"] or "runs")
    where = [(key, op, parse_value(value)) for key, op, value in args["where"]]
    found = find_runs(root)
    rows = table_rows(
        [
            r
            for r in found
            if matches(r, args["experiment"], args["status"], where)
            and (args["sweep"] is None or ((r.provenance or {}).get("sweep") or {}).get("study") == args["sweep"])
        ]
    )
    if args["json"]:
        say(json.dumps(rows, indent=2))
    else:
        say(format_table(rows) if rows else "no runs match" if found else f"no runs under {root}")
    return 0


def _diff(args: dict[str, Any]) -> int:
    import json

    from ednaml.tracking.browse import diff, format_diff, side

    if len(args["positional"]) != 2:
        raise UsageError("`ednaml diff` takes two runs (folders or run ids) or config files")
    root = args["root"] or "runs"
    result = diff(side(args["positional"][0], root), side(args["positional"][1], root))
    say(json.dumps(result, indent=2, default=str) if args["json"] else format_diff(result))
    return 0


def _reproduce(args: dict[str, Any]) -> int:
    from ednaml.api import reproduce

    if len(args["positional"]) != 1:
        raise UsageError("`ednaml reproduce` takes one run (its folder or run id)")
    summary, difference = reproduce(
        args["positional"][0], args["root"] or "runs", trust=args["trust"], imports=args["imports"]
    )
    _report(summary)
    say("\n" + difference)
    return 0 if summary["status"] == "finished" else 1


def _sync(args: dict[str, Any]) -> int:
    import shutil
    import subprocess
    from pathlib import Path

    from ednaml.tracking.browse import resolve_run
    from ednaml.tracking.sync import relocate, sync_plan

    if not args["positional"]:
        raise UsageError("`ednaml sync` takes one or more runs (folders or run ids)")
    plans, problems = [], []
    for ref in args["positional"]:
        run = resolve_run(ref, args["root"] or "runs")
        offline = sync_plan(run, trust=args["trust"])
        if not offline:
            say(f"{run}: no offline W&B run (it ran with W&B online or disabled)")
        for each in offline:
            say(
                f"{each.directory}: {len(each.files) + len(each.artifacts)} files"
                + (" would be sent" if args["dry-run"] else "")
            )
            root = run.resolve()
            say(
                "\n".join(
                    f"  {path.relative_to(root) if path.is_relative_to(root) else path}"
                    for path in each.files + each.artifacts
                )
            )
            if each.moved:
                say(
                    f"  (the run folder was moved: {len(each.moved)} artifact paths of its W&B log point here"
                    + (" when it is sent)" if args["dry-run"] else ")")
                )
            problems += [f"{each.directory}: {problem}" for problem in each.problems]
        plans += offline
    if problems:
        say("\n".join(["nothing was sent:", *problems]), file=sys.stderr)
        return 2
    if args["dry-run"] or not plans:
        return 0
    wandb = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    if wandb is None:
        raise UsageError("`wandb` is not installed here: pip install wandb")
    for each in plans:
        relocate(each)
    result = subprocess.run([wandb, "sync", *(str(each.directory) for each in plans)])
    say(
        f"sent {len(plans)} offline W&B run(s)"
        if result.returncode == 0
        else f"wandb sync failed (exit {result.returncode})"
    )
    return 0 if result.returncode == 0 else 1


def _export(args: dict[str, Any]) -> int:
    from ednaml.api import EdnaML
    from ednaml.checkpoints import trained_checkpoint
    from ednaml.export import FILES, export

    if len(args["positional"]) != 1:
        raise UsageError("`ednaml export` takes one run folder, run id or checkpoint")
    if args["format"] not in FILES:
        raise UsageError(
            f"`ednaml export` needs --format {' or '.join(FILES)}"
            + (f", not {args['format']!r}" if args["format"] else "")
        )
    checkpoint = trained_checkpoint(args["positional"][0], args["root"] or "runs")
    experiment = EdnaML(ckpt_path=str(checkpoint), imports=args["imports"], trust=True if args["trust"] else None)
    folder, described = export(experiment.config, checkpoint, args["format"], args["output"])
    check = described["check"]
    say(f"exported {checkpoint} as {args['format']}: {folder / described['file']}")
    say(f"  outputs: {', '.join(o['name'] for o in described['outputs'])}; described in {folder / 'model.json'}")
    say(
        "  against the checkpoint: "
        + (
            f"largest difference {check['max_abs_difference']:.2e}"
            if "max_abs_difference" in check
            else check["skipped"]
        )
    )
    return 0


def _whole_number(args: dict[str, Any], flag: str) -> int | None:
    if args[flag] is None:
        return None
    if not re.fullmatch(r"[1-9][0-9]*", args[flag]):
        raise UsageError(f"--{flag} {args[flag]!r}: a whole number of at least 1")
    return int(args[flag])


def _sweep(args: dict[str, Any]) -> int:
    import json

    from ednaml.sweeps.study import SWEEPS, check_name, run_of_trial, run_sweep

    unused = []  # the flags of the other form (COMMANDS refuses those no form takes)
    if args["best"]:
        unused += [
            f"--{flag}"
            for flag in ("config", "sweep", "trials", "storage", "study", "parallel", "import")
            if args[flag.replace("import", "imports")]
        ]
        unused += ["overrides"] if args["overrides"] else []
    elif args["print_config"]:
        unused.append("--print_config (it prints the best trial's config: --best NAME --print_config)")
    if unused:
        raise UsageError(f"`ednaml sweep{' --best' if args['best'] else ''}` does not take {', '.join(unused)}")
    if args["best"]:
        found = SWEEPS / check_name(args["best"], "--best") / "sweep.json"
        if not found.is_file():
            raise UsageError(
                f"--best {args['best']}: no sweep {found.parent} here (`ednaml sweep` writes sweeps/NAME/sweep.json)"
            )
        from ednaml.tracking.run_folder import RunFolderError, read_run_json, read_run_text

        try:
            best = read_run_json(found).get("best")
            run = run_of_trial(best["run"], args["best"], best["number"]) if best else None
        except (RunFolderError, AttributeError, KeyError, TypeError):
            raise UsageError(f"{found} is not a sweep summary (`ednaml sweep` writes it)") from None
        if not best:
            raise UsageError(f"sweep {args['best']} has no complete trial yet")
        if run is None:
            raise UsageError(
                f"the best trial's run folder {best['run']} is gone, or is not trial {best['number']} of {args['best']}"
            )
        if args["print_config"]:
            say(read_run_text(run / "config.yaml"), end="")
        else:
            say(f"best trial {best['number']}: {best['value']:.6g}; {run}")
            say("\n".join(f"  {key}: {json.dumps(value)}" for key, value in best["params"].items()))
        return 0
    if not args["config"] or not args["sweep"]:
        raise UsageError("`ednaml sweep` needs --config CFG.yml and --sweep SPACE.yml (or --best NAME)")
    sweep = run_sweep(
        args["config"],
        args["sweep"],
        args["overrides"],
        args["imports"],
        _whole_number(args, "trials"),
        args["storage"],
        args["study"],
        _whole_number(args, "parallel") or 1,
    )
    from ednaml.sweeps.results import summary

    record = summary(sweep)
    counts = ", ".join(f"{n} {state}" for state, n in record["counts"].items() if n)
    say(f"\nsweep {sweep.name}: {counts}; results in {sweep.folder}/ (sweep.json, trials.csv, report.html)")
    if best := record["best"]:
        say(f"best: trial {best['number']}, {record['metric']} {best['value']:.4f}: {best['run']}")
    return 0


def _migrate(args: dict[str, Any]) -> int:
    from pathlib import Path

    from ednaml.migrate import migrate

    if len(args["positional"]) != 1:
        raise UsageError("`ednaml migrate` takes one config file: ednaml migrate OLD.yml [-o NEW.yml]")
    target = Path(args["output"]) if args["output"] else None
    if target is not None and target.exists():
        raise UsageError(f"-o {target}: the file exists; give a new name (migrate never writes over a file)")
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"-o {target}: the folder {target.parent} does not exist")
    text, notes, problems = migrate(args["positional"][0])
    if target is None:
        say(text, end="")
    else:
        with open(target, "x", encoding="utf-8") as handle:
            handle.write(text)
        say(
            f"wrote {target}: {len(notes)} change(s) noted at its top"
            + (
                f"; {len(problems)} thing(s) still to do, listed there too"
                if problems
                else "; `ednaml check` finds no problem"
            )
        )
    return 0


def _init(args: dict[str, Any]) -> int:
    from pathlib import Path

    from ednaml.init import starter

    if not args["data"]:
        raise UsageError("`ednaml init` needs --data: a folder of images or a CSV manifest")
    target = Path(args["output"]) if args["output"] else None
    if target is not None and (target.exists() or target.is_symlink()):
        raise UsageError(f"-o {target}: the file exists; give a new name (init never writes over a file)")
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"-o {target}: the folder {target.parent} does not exist")
    text, found = starter(args["data"], target)
    if target is None:
        say(text, end="")
        return 0
    with open(target, "x", encoding="utf-8") as handle:
        handle.write(text)
    counts = ", ".join(f"{split} {n}" for split, n in found.samples.items())
    say(
        f"wrote {target}: {found.reader} ({counts}; {sum(map(len, found.labels.values()))} classes); "
        f"`ednaml check --config {target}` finds no problem. For the editor: `ednaml schema -o "
        f"{target.parent / 'ednaml.schema.json'}`"
    )
    return 0


def _schema(args: dict[str, Any]) -> int:
    import json
    from pathlib import Path

    from ednaml import registry
    from ednaml.json_schema import TITLE, config_schema, dump

    try:
        registry.import_sources(args["imports"])
    except (ImportError, FileNotFoundError, SyntaxError, registry.RegistryError) as err:
        raise UsageError(f"--import: cannot import {err}") from None
    text = dump(config_schema())
    if not args["output"]:
        say(text, end="")
        return 0
    target = Path(args["output"])
    if not target.parent.is_dir():
        raise UsageError(f"-o {target}: the folder {target.parent} does not exist")
    if target.exists() or target.is_symlink():
        try:
            earlier = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else None
        except (OSError, UnicodeDecodeError, ValueError):
            earlier = None
        if not (isinstance(earlier, dict) and earlier.get("title") == TITLE) or target.is_symlink():
            raise UsageError(f"-o {target}: the file exists and is not an EdnaML schema; give a new name")
    target.write_text(text, encoding="utf-8")
    say(f"wrote {target}: start a config with `# yaml-language-server: $schema={target}` (docs/config.md)")
    return 0


def _check(args: dict[str, Any]) -> int:
    from ednaml.api import EdnaML
    from ednaml.check import check
    from ednaml.errors import ConfigError, locate

    if not args["config"]:
        raise UsageError("`ednaml check` needs --config FILE")
    experiment = EdnaML(*args["config"], overrides=args["overrides"], imports=args["imports"])
    lines, problems = check(experiment.config, experiment.trust)
    say("\n".join(lines))
    if problems:
        raise ConfigError(locate(problems, experiment.origins), ", ".join(args["config"]))
    say("ready to train")
    return 0


def _run(args: dict[str, Any]) -> int:
    from ednaml.api import EdnaML
    from ednaml.config import dump

    ckpt = dict(args["overrides"]).get("ckpt_path")
    if args["positional"]:  # predict RUN_OR_CKPT
        from ednaml.checkpoints import trained_checkpoint

        if len(args["positional"]) > 1 or ckpt:
            raise UsageError("`ednaml predict` takes one run folder, run id or checkpoint (or --ckpt_path)")
        ckpt = str(trained_checkpoint(args["positional"][0], args["root"] or "runs"))
    if args["resume"]:
        experiment = EdnaML.resume(
            args["resume"],
            *args["config"],
            overrides=args["overrides"],
            imports=args["imports"],
            root=args["root"] or "runs",
            trust=args["trust"],
        )
    elif not args["config"] and not ckpt:
        raise UsageError(f"`ednaml {args['command']}` needs --config FILE (or --ckpt_path of an EdnaML checkpoint)")
    else:
        experiment = EdnaML(
            *args["config"],
            overrides=args["overrides"],
            imports=args["imports"],
            ckpt_path=ckpt,
            trust=True if args["trust"] else None,
        )
    experiment.invocation["argv"] = args["argv"]
    if args["print_config"]:
        say(dump(experiment.config), end="")
        return 0
    request = None
    if args["command"] == "predict":
        from ednaml.adapters.predictions import PredictRequest

        request = PredictRequest(args["data"], args["output"])
    summary = experiment.run(args["command"], request)
    from ednaml.utils import is_rank_zero

    if is_rank_zero():  # the other processes of a multi-device run stay quiet
        _report(summary)
    return 0 if summary["status"] == "finished" else 1


def _report(summary: dict[str, Any]) -> None:
    final = summary.get("final", {})
    # the total loss and the metrics (lower-case names), not each loss term (NAME/LossClass)
    shown = {
        k: v
        for k, v in final.items()
        if k.startswith(("test/", "val/")) and v is not None and k.rsplit("/", 1)[1].islower()
    }
    say(f"\nrun {summary['run_id']} {summary['status']}: {summary.get('run_dir')}")
    for key, value in sorted(shown.items()):
        say(f"  {key:<20} {value:.4f}" if isinstance(value, float) else f"  {key:<20} {value}")
    for warning in summary.get("warnings", []):
        say(f"ednaml: warning: {warning}", file=sys.stderr)
    if error := summary.get("backup_error"):
        say(f"ednaml: warning: {error}", file=sys.stderr)
    if skipped := summary.get("skipped_samples"):
        say(
            f"ednaml: warning: {skipped['samples']} sample(s) failed to load and were skipped "
            "(EXECUTION.DATAREADER.BAD_SAMPLES: skip); "
            f"summary.json lists them",
            file=sys.stderr,
        )


def _traceback(kind: type[BaseException], err: BaseException, tb: Any) -> None:
    """A bug's traceback (or any with --debug), its messages' secrets masked."""
    import traceback

    sys.stderr.write(shown("".join(traceback.format_exception(kind, err, tb))))


def console() -> NoReturn:
    """The `ednaml` command: the allocator's policy (ednaml.allocator), `main`, then the process's end."""
    from ednaml import allocator

    sys.excepthook = _traceback
    allocator.tune()
    try:
        code = main()
    except BrokenPipeError:  # `ednaml diff A B | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        code = 141  # 128 + SIGPIPE, as a shell reports a command ended by a closed pipe
    allocator.release()
    # At exit Python collects garbage over the whole heap (torch, Lightning, W&B: millions of objects), and
    # more than once: 2 s after every run. Nothing needs freeing as the process ends.
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    collecting = gc.isenabled()
    try:
        args = parse_args(argv)
        if args["command"] in STAGES + ("check",):
            # Start-up creates half a million long-lived objects (torch, Lightning, W&B): collecting
            # garbage among them, again and again, took a second. A run turns collection back on once
            # they are frozen (adapters.runner.frozen_for_the_run).
            gc.disable()
        if args["command"] == "help":
            print(usage())  # ours, not a value: never masked
            return 0
        if args["command"] == "version":
            from ednaml.version import __version__

            say(f"ednaml {__version__}")
            return 0
        if args["help"]:  # ours too
            print(command_help(args["command"]) + (_trainer_help() if args["command"] in STAGES else ""))
            return 0
        args["argv"] = argv
        run = COMMANDS[args["command"]].run
        return (run if callable(run) else globals()[run])(args)
    except UsageError as err:
        say(f"ednaml: error: {err}\n(see `ednaml --help`)", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001
        from ednaml.errors import USER_ERRORS, ConfigError, RunStopped

        if debug or not isinstance(err, USER_ERRORS):
            raise
        lead = "run stopped: " if isinstance(err, RunStopped) else "" if isinstance(err, ConfigError) else "error: "
        say(f"ednaml: {lead}{err}", file=sys.stderr)
        return err.exit_code
    finally:
        warnings.formatwarning = previous
        if collecting:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
