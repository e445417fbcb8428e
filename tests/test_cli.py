"""The command line is declared: each subcommand's flags, words and help come from COMMANDS and FLAGS, and
jsonargparse parses what a subcommand declares; config overrides keep EdnaML's own forms and errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ednaml import cli
from ednaml.cli import COMMANDS, FLAGS, Command, command_help, main, parse_args, usage
from ednaml.errors import UsageError


def _argv(flag: str) -> list[str]:
    return [f"--{flag}"] + ([] if FLAGS[flag].metavar is None else ["k=x" if flag == "where" else "x"])


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_takes_exactly_the_flags_it_declares(name):
    command = COMMANDS[name]
    for flag in FLAGS:
        if flag in command.flags:
            args = parse_args([name, *_argv(flag)])
            key = "imports" if flag == "import" else flag
            given = args["overrides"] if FLAGS[flag].override else args[key]
            assert given in (True, "x", ["x"], [(flag, "x")], [("k", "=", "x")]), (name, flag, given)
        else:
            with pytest.raises(UsageError, match=rf"`ednaml {name}` does not take --{flag} \(it takes "):
                parse_args([name, *_argv(flag)])


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_commands_help_lists_its_declared_flags_and_the_overrides_where_it_takes_them(name):
    text = command_help(name)
    assert text.startswith(f"usage: ednaml {name} {COMMANDS[name].usage}")
    for flag in FLAGS:
        assert (f"--{flag} " in text or f"--{flag}\n" in text) == (flag in COMMANDS[name].flags), flag
    assert ("SECTION.KEY=VALUE" in text) == COMMANDS[name].overrides


@pytest.mark.parametrize("name", list(COMMANDS))
def test_words_are_taken_only_by_a_command_that_declares_them(name):
    if COMMANDS[name].words:
        assert parse_args([name, "one"])["positional"] == ["one"]
    else:
        with pytest.raises(UsageError, match="unexpected argument 'one'"):
            parse_args([name, "one"])


def test_overrides_keep_their_order_and_forms():
    args = parse_args(
        ["fit", "-c", "a.yml", "--config=b.yml", "--EXECUTION.EPOCHS", "3", "~MODEL.MODEL_KWARGS.width"]
        + ["--trainer.devices=2", "OPTIMIZER.0.BASE_LR=0.01", "--ckpt_path", "c.ckpt"]
    )
    assert args["config"] == ["a.yml", "b.yml"]
    assert args["overrides"] == [
        ("EXECUTION.EPOCHS", "3"),
        ("MODEL.MODEL_KWARGS.width", "!delete"),
        ("trainer.devices", "2"),
        ("OPTIMIZER.0.BASE_LR", "0.01"),
        ("ckpt_path", "c.ckpt"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fitt"], "unknown command 'fitt'; did you mean 'fit'?"),
        (["fit", "--confg", "x.yml"], "unknown option --confg; did you mean --config?"),
        (["fit", "--config"], "--config needs a value"),
        (["fit", "--config", "--trainer.devices", "2"], "--config needs a value"),
        (["fit", "--print_config=yes"], "--print_config takes no value"),
        (["runs", "--EXECUTION.EPOCHS", "3"], "unknown option --EXECUTION.EPOCHS"),
        (["runs", "--where", "accuracy"], "--where 'accuracy': write it as KEY=VALUE or METRIC>NUMBER"),
        (["list", "EXECUTION.EPOCHS=3", "--nope"], "unknown option --nope"),
    ],
)
def test_a_mistake_on_the_command_line_is_named_with_what_would_be_right(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("?", r"\?").replace(".", r"\.")):
        parse_args(argv)


def test_values_stay_as_written_for_the_command_to_read():
    args = parse_args(["sweep", "--config", "3", "--sweep", "null", "--trials", "05", "--study", "[a, b]"])
    assert (args["config"], args["sweep"], args["trials"], args["study"]) == (["3"], "null", "05", "[a, b]")


def test_a_subcommand_is_one_declaration(monkeypatch, capsys):
    seen = []
    monkeypatch.setitem(
        COMMANDS,
        "hello",
        Command("[NAME] [--json]", "greet", ("json", "root"), words="NAME", run=lambda args: seen.append(args) or 0),
    )
    assert main(["hello", "world", "--json", "--root", "r"]) == 0
    assert seen[0]["positional"] == ["world"] and seen[0]["json"] is True and seen[0]["root"] == "r"
    assert main(["hello", "--help"]) == 0
    assert "usage: ednaml hello [NAME] [--json]" in capsys.readouterr().out
    assert "ednaml hello [NAME] [--json]" in usage() and "  hello      greet" in usage()
    assert main(["hello", "--trials", "3"]) == 2
    assert "`ednaml hello` does not take --trials" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--version"], ["version"]])
def test_the_version_is_printed(argv, capsys):
    assert main(argv) == 0 and capsys.readouterr().out.startswith("ednaml ")


def test_the_help_names_every_command_and_flag():
    text = usage()
    assert all(f"ednaml {name} " in text for name in COMMANDS)
    assert all(f"--{flag}" in text for flag in FLAGS)


@pytest.mark.e2e
def test_the_top_level_help_imports_neither_the_parser_nor_torch():
    probe = (
        "import sys; from ednaml.cli import main; main(['--help']);"
        "print(sorted(m for m in ('jsonargparse', 'torch', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "[]", result.stderr[-2000:]


def test_the_parser_of_a_command_is_jsonargparse_built_from_its_declaration():
    from jsonargparse import ArgumentParser

    parser = cli._parser("export")
    assert isinstance(parser, ArgumentParser)
    assert {action.dest for action in parser._actions} >= {"format", "output", "root", "imports", "trust", "debug"}
