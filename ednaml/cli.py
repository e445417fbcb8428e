"""`ednaml fit | validate | test | predict | list`: the command line, with Lightning's flag conventions."""

from __future__ import annotations

import gc
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from ednaml.errors import UsageError, did_you_mean

STAGES = ("fit", "validate", "test", "predict")
COMMANDS = STAGES + ("check", "sweep", "migrate", "list", "runs", "diff", "reproduce", "sync", "export")
FLAGS_WITH_VALUE = (
    "--config",
    "--ckpt_path",
    "--seed_everything",
    "--import",
    "--resume",
    "--root",
    "--experiment",
    "--status",
    "--where",
    "--data",
    "--output",
    "--format",
    "--sweep",
    "--trials",
    "--storage",
    "--study",
    "--parallel",
    "--best",
)
BARE_FLAGS = ("--print_config", "--debug", "--help", "--json", "--trust", "--dry-run")


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


USAGE = """\
usage: ednaml {fit,validate,test,predict} --config CFG.yml [--config MORE.yml] [options] [--KEY.PATH VALUE ...]
       ednaml fit --resume RUN
       ednaml predict RUN_OR_CKPT [--data PATH] [--output FILE] [options]
       ednaml check --config CFG.yml [...]
       ednaml sweep --config CFG.yml --sweep SPACE.yml [--trials N] [--study NAME] [--storage URL] [--parallel K] [...]
       ednaml sweep --best NAME [--print_config]
       ednaml migrate OLD.yml [-o NEW.yml]
       ednaml list [KIND] [PATTERN] [--import FILE]   (ednaml list KIND NAME: its arguments)
       ednaml runs [ROOT] [--experiment PATTERN] [--status STATUS] [--sweep NAME] \
[--where KEY=VALUE | METRIC>NUMBER ...] [--json]
       ednaml diff RUN_A RUN_B [--root ROOT] [--json]
       ednaml reproduce RUN [--root ROOT]
       ednaml sync RUN [RUN ...] [--root ROOT] [--dry-run] [--trust]
       ednaml export RUN_OR_CKPT --format torchscript|onnx [--output DIR]

Run an experiment described by an EdnaML config on a Lightning Trainer.

commands:
  fit        train (after one validation pass unless EXECUTION.SKIPEVAL), then test
  validate   evaluate on the validation split
  test       evaluate on the test split (--ckpt_path alone: the checkpoint's own config)
  predict    one record per input (DEPLOYMENT.DEPLOY: class, probability, top-k) for new data (--data:
             an image, text or video file or folder, no labels needed) or the test split, from a run's
             best (else last) checkpoint or a checkpoint file; a manifest names what produced them
  check      build everything and try one batch, one backward and one optimizer step, without
             training; print the data, model, parameter groups, learning-rate schedule, checkpoint
             plan and run folder; exit 0 when ready to train, 2 otherwise
  sweep      an Optuna study over config keys (SPACE.yml: SWEEP, METRIC, DIRECTION, TRIALS, SAMPLER,
             PRUNER); each trial an `ednaml fit` run with the sampled values; results in sweeps/NAME
             (sweep.json, trials.csv, report.html); the same command again continues the study;
             --storage: an Optuna RDB URL or journal file shared by sweeps on several machines;
             --parallel K: K trials at a time, one GPU each; --best NAME: the best trial (its config)
  migrate    a config written for the original EdnaML as this version's, with a comment for each key
             that changed or was dropped and what `check` would still report (-o NEW.yml: to a file,
             never over one)
  list       the registered components, by kind (datareader, model, loss, ...)
  runs       the runs under ROOT (default ./runs), newest first
  diff       what differs between two runs (folders or run ids) or configs: config, components,
             versions, data, final metrics
  reproduce  a new run from RUN's resolved config and seed, then its diff against RUN
  export     the model of a run (its best, else last checkpoint) or checkpoint as TorchScript or ONNX,
             runnable without EdnaML, with model.json (inputs, outputs, label names, preprocessing)
             and the tokenizer beside it; checked against the checkpoint on an example input
  sync       upload offline W&B runs (every process of a resumed run) with `wandb sync`, also from a
             run folder moved to another machine; only files inside the run folder are sent; --dry-run
             lists what would be sent

options:
  -c, --config FILE        a config file; several merge left to right (mappings merge, lists replace;
                           see docs/config.md for !replace, !delete and swapping a component)
  --print_config           print the resolved config (it loads again as the same config) and exit
  --ckpt_path PATH         checkpoint to start from (fit) or to evaluate
  --resume RUN             continue an interrupted run (its folder or run id) from its last checkpoint
  --data PATH              predict: new inputs (a file or folder) instead of the test split
  --output FILE            predict: write the records here (.csv, .jsonl, .parquet), never over a file
  --seed_everything N      seed for every RNG (default: one is picked and recorded)
  --import FILE|MODULE     import custom components before names are resolved (repeatable)
  --trainer.NAME VALUE     any lightning.Trainer argument (--trainer.devices 2, --trainer.precision bf16-mixed)
  --SECTION.KEY VALUE      any config key by its dotted path (--EXECUTION.EPOCHS 3, --OPTIMIZER.0.BASE_LR 0.01)
  SECTION.KEY=VALUE        the same, as Hydra writes it (EXECUTION.EPOCHS=3)
  ~SECTION.KEY             remove a key the config files set (~MODEL.MODEL_KWARGS.width)
  --trust                  let a config from a checkpoint or run folder name code (EXECUTION.IMPORTS, dotted
                           component paths, trainer class_paths and callables) and choose where the run
                           goes (runs root, backups, W&B online); without it such a config is data only
                           (docs/trust.md). sync: send artifact files that a run's W&B log names outside
                           its run folder
  --debug                  show Python tracebacks
  -h, --help               show this help (with a stage: also every --trainer.* argument)

Values are read as YAML 1.2: 3 and 3e-3 are numbers, [8, 8] a list, null nothing.
"""


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Split argv into the command, config files, overrides (dotted path, value) and flags."""
    if not argv or argv[0] in ("-h", "--help"):
        return {"command": "help"}
    if argv[0] in ("--version", "version"):
        return {"command": "version"}
    command, rest = argv[0], list(argv[1:])
    if command not in COMMANDS:
        raise UsageError(
            f"unknown command {command!r}" + did_you_mean(command, COMMANDS, f"; commands are {', '.join(COMMANDS)}")
        )
    args: dict[str, Any] = {
        "command": command,
        "config": [],
        "overrides": [],
        "imports": [],
        "print_config": False,
        "debug": False,
        "help": False,
        "json": False,
        "trust": False,
        "positional": [],
        "where": [],
        "resume": None,
        "root": None,
        "experiment": None,
        "status": None,
        "dry-run": False,
        "data": None,
        "output": None,
        "format": None,
        "sweep": None,
        "trials": None,
        "storage": None,
        "study": None,
        "parallel": None,
        "best": None,
    }
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token in ("-h", "--help"):
            args["help"] = True
            continue
        if not token.startswith("-"):
            override = re.fullmatch(r"([A-Za-z_][\w.\[\]]*)=(.*)", token, re.S)
            deletion = re.fullmatch(r"~[A-Za-z_][\w.\[\]]*", token)
            if command in STAGES + ("check", "sweep") and (override or deletion or command != "predict"):
                # Hydra's KEY=VALUE is an override; any other word a mistake (but predict's RUN_OR_CKPT)
                if deletion:  # Hydra's ~KEY deletes a key
                    args["overrides"].append((token[1:], "!delete"))
                    continue
                if not override:
                    raise UsageError(
                        f"unexpected argument {token!r}: write an override as --KEY.PATH VALUE or "
                        "KEY.PATH=VALUE, and a config as --config FILE"
                    )
                args["overrides"].append(override.groups())
                continue
            args["positional"].append(token)
            continue
        name, eq, value = token.partition("=")
        name = {"-c": "--config", "-o": "--output"}.get(name, name)
        if name in BARE_FLAGS:
            args[name[2:]] = True
            continue
        if not eq:
            if i >= len(rest) or (rest[i].startswith("--") and len(rest[i]) > 2):
                raise UsageError(f"{name} needs a value")
            value, i = rest[i], i + 1
        key = name[2:]
        if name == "--config":
            args["config"].append(value)
        elif name == "--import":
            args["imports"].append(value)
        elif name == "--where":
            match = re.fullmatch(r"\s*([^<>=!\s]+)\s*(>=|<=|!=|=|>|<)\s*(.*)", value)
            if not match:
                raise UsageError(
                    f"--where {value!r}: write it as KEY=VALUE or METRIC>NUMBER, "
                    "e.g. --where OPTIMIZER.0.BASE_LR=0.001 "
                    "or --where 'test/accuracy>0.9'"
                )
            args["where"].append(match.groups())
        elif name in (
            "--resume",
            "--root",
            "--experiment",
            "--status",
            "--data",
            "--output",
            "--format",
            "--sweep",
            "--trials",
            "--storage",
            "--study",
            "--parallel",
            "--best",
        ):
            args[key] = value
        elif name in ("--ckpt_path", "--seed_everything"):
            args["overrides"].append((key, value))
        elif "." in key or key.isupper() or key in ("trainer",):
            args["overrides"].append((key, value))
        else:
            options = [f[2:] for f in FLAGS_WITH_VALUE + BARE_FLAGS] + ["trainer.<arg>", "SECTION.KEY"]
            raise UsageError(f"unknown option --{key}" + did_you_mean(key, options, form=lambda option: f"--{option}"))
    return args


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

    unused = [
        f"--{flag}"
        for flag in ("resume", "data", "output", "format", "root", "experiment", "status", "json", "trust", "dry-run")
        if args[flag]
    ] + (["--where"] if args["where"] else [])
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

    if args["help"]:
        print(USAGE + _trainer_help())  # ours, not a value: never masked
        return 0
    ckpt = dict(args["overrides"]).get("ckpt_path")
    if (args["data"] or args["output"]) and args["command"] != "predict":
        raise UsageError(f"--{'data' if args['data'] else 'output'} is for `ednaml predict`")
    if args["positional"]:  # predict RUN_OR_CKPT
        from ednaml.checkpoints import trained_checkpoint

        if len(args["positional"]) > 1 or ckpt:
            raise UsageError("`ednaml predict` takes one run folder, run id or checkpoint (or --ckpt_path)")
        ckpt = str(trained_checkpoint(args["positional"][0], args["root"] or "runs"))
    if args["resume"]:
        if args["command"] != "fit":
            raise UsageError("--resume continues training: use it with `ednaml fit`")
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
            print(USAGE)  # ours, not a value: never masked
            return 0
        if args["command"] == "version":
            from ednaml.version import __version__

            say(f"ednaml {__version__}")
            return 0
        args["argv"] = argv
        commands = {
            "check": _check,
            "sweep": _sweep,
            "migrate": _migrate,
            "list": _list,
            "runs": _runs,
            "diff": _diff,
            "reproduce": _reproduce,
            "sync": _sync,
            "export": _export,
        }
        return commands.get(args["command"], _run)(args)
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
