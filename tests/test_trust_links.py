"""A run folder from someone else may hold symbolic links where EdnaML writes: `fit --resume` refuses it,
naming the link, before anything is written through one."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from helpers import CONFIGS, run_ednaml, run_folders, stopped_at_a_checkpoint, summary

from ednaml.errors import RunFolderLink
from ednaml.tracking.run_folder import links_out, open_no_link, refuse_links, write_atomic

# Every name EdnaML (or W&B, in the folders EdnaML gives it) writes in a run folder. Those the interrupted run
# already has are moved out and linked to; the others are linked to a file or folder that does not exist yet.
WRITTEN = [
    "log.txt",
    "metrics.csv",
    "summary.json",
    "config.yaml",
    "provenance.json",
    "parameter_groups.json",
    "report.html",
    "confusion.json",
    "tokenizer.json",
    "git.diff",
    ".lock",
    "predictions.csv",
    "predictions.manifest.json",
    "checkpoints",
    "checkpoints/last.ckpt",
    "checkpoints/model.pt",
    "wandb",
    "wandb/cache",
    "wandb/staging",
    "wandb/artifacts",
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`, with a file's bytes as their hash."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


def plant(run: Path, name: str, outside: Path) -> Path:
    """`run/name` made a link to `outside/name`, holding what the run had there (if anything)."""
    target = outside / name.replace("/", "_")
    if (run / name).exists():
        shutil.move(run / name, target)
    (run / name).symlink_to(target, target_is_directory=target.is_dir())
    return target


# ---- what a link in a run folder is, without running anything ----


def make_run(folder: Path) -> Path:
    """A run folder as EdnaML leaves it, with W&B's own links: relative ones, and the core log's absolute one."""
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("log.txt", "summary.json", "checkpoints/last.ckpt"):
        (folder / name).write_text("x")
    logs = folder / "wandb" / "offline-run-1" / "logs"
    logs.mkdir(parents=True)
    (logs / "debug.log").write_text("x")
    (folder / "wandb" / "latest-run").symlink_to("offline-run-1", target_is_directory=True)
    (folder / "wandb" / "debug.log").symlink_to("offline-run-1/logs/debug.log")
    (logs / "debug-core.log").symlink_to("/where/the/run/was/made/wandb/cache/core-debug.log")
    return folder


def test_a_run_folder_with_only_wandbs_own_links_has_no_link_out(tmp_path):
    assert links_out(make_run(tmp_path / "run")) == []


@pytest.mark.parametrize(
    "name",
    [
        "log.txt",
        "checkpoints/last.ckpt",
        "checkpoints/epoch3.ckpt",
        "wandb/cache",
        "wandb/offline-run-1/files",
        "wandb/latest-run",
    ],
)
def test_a_link_where_ednaml_writes_or_out_of_the_folder_is_named(tmp_path, name):
    run = make_run(tmp_path / "run")
    (tmp_path / "outside").mkdir()
    if (run / name).is_symlink() or (run / name).is_file():
        (run / name).unlink()
    (run / name).symlink_to(tmp_path / "outside")
    assert links_out(run) == [(name, str(tmp_path / "outside"))]


def test_a_link_onto_another_file_of_the_folder_is_named(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "metrics.csv").symlink_to("summary.json")
    assert links_out(run) == [("metrics.csv", "summary.json")]


def test_a_linked_folder_is_named_once_and_not_entered(tmp_path):
    run = make_run(tmp_path / "run")
    shutil.move(run / "checkpoints", tmp_path / "elsewhere")
    (run / "checkpoints").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "inner.ckpt").symlink_to(tmp_path)
    with pytest.raises(RunFolderLink) as refused:
        refuse_links(run)
    assert refused.value.links == [("checkpoints", str(tmp_path / "elsewhere"))]
    assert "checkpoints is a symbolic link to" in str(refused.value) and refused.value.exit_code == 2


def test_a_file_of_the_run_folder_is_never_opened_through_a_link(tmp_path):
    (tmp_path / "outside.txt").write_text("theirs")
    (tmp_path / "log.txt").symlink_to(tmp_path / "outside.txt")
    for mode in ("a", "w", "r"):
        with pytest.raises(RunFolderLink, match="log.txt is a symbolic link"):
            open_no_link(tmp_path / "log.txt", mode)
    assert (tmp_path / "outside.txt").read_text() == "theirs"
    with open_no_link(tmp_path / "metrics.csv", "a") as handle:  # a plain file is appended to as before
        handle.write("step\n")
    assert (tmp_path / "metrics.csv").read_text() == "step\n"


def test_writing_a_file_replaces_a_link_at_its_name_and_leaves_the_target(tmp_path):
    (tmp_path / "outside.json").write_text("theirs")
    (tmp_path / "summary.json").symlink_to(tmp_path / "outside.json")
    temporary = tmp_path / f".summary.json.tmp{os.getpid()}"  # where the text is written before it is renamed
    temporary.symlink_to(tmp_path / "outside-tmp.json")
    with pytest.raises(RunFolderLink):
        write_atomic(tmp_path / "summary.json", "{}")
    temporary.unlink()
    write_atomic(tmp_path / "summary.json", "{}")
    assert not (tmp_path / "summary.json").is_symlink() and (tmp_path / "summary.json").read_text() == "{}"
    assert (tmp_path / "outside.json").read_text() == "theirs" and not (tmp_path / "outside-tmp.json").exists()


# ---- `ednaml fit --resume` of a run folder with a planted link ----


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A run stopped by SIGTERM at a checkpoint: it can be resumed."""
    cwd = tmp_path_factory.mktemp("interrupted")
    process, _, err = stopped_at_a_checkpoint(
        [
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            "--EXECUTION.EPOCHS",
            "2",
            "--SAVE.STEP_SAVE_FREQUENCY",
            "3",
            "--trainer.limit_train_batches",
            "6",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.limit_test_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd,
        pattern="runs/*/*/checkpoints/*_step3.ckpt",
    )
    assert process.returncode == 143, err[-2000:]
    (run,) = run_folders(cwd / "runs")
    assert summary(run)["status"] == "interrupted" and (run / "checkpoints" / "last.ckpt").is_file()
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    """The interrupted run, moved to another machine's runs folder (W&B's absolute links still point back)."""
    copy = tmp_path / "runs" / run.parent.name / run.name
    shutil.copytree(run, copy, symlinks=True)
    return copy


@pytest.mark.e2e
@pytest.mark.parametrize("name", WRITTEN)
def test_resume_refuses_a_run_folder_with_a_link_where_ednaml_writes(interrupted, tmp_path, name):
    run = copy_of(interrupted, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    plant(run, name, outside)
    before = snapshot(outside)
    result = run_ednaml("fit", "--resume", str(run), "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        f"{name} is a symbolic link to {outside}" in result.stderr and "Traceback" not in result.stderr + result.stdout
    )
    assert snapshot(outside) == before  # nothing written there, nothing new made there


@pytest.mark.e2e
def test_a_moved_run_folder_with_wandbs_own_links_resumes(interrupted, tmp_path):
    run = copy_of(interrupted, tmp_path)
    result = run_ednaml("fit", "--resume", str(run), "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(run)["status"] == "finished" and (run / "checkpoints" / "model.pt").is_file()


@pytest.mark.e2e
def test_a_run_with_backups_resumes_when_the_user_gives_the_backup_target_again(tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    backups = tmp_path / "backups"
    process, _, err = stopped_at_a_checkpoint(
        [
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            "--EXECUTION.EPOCHS",
            "2",
            "--SAVE.STEP_SAVE_FREQUENCY",
            "3",
            "--SAVE.DRIVE_BACKUP",
            "true",
            "--SAVE.CHECKPOINT_DIRECTORY",
            str(backups),
            "--trainer.limit_train_batches",
            "6",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.limit_test_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd,
        pattern="runs/*/*/checkpoints/*_step3.ckpt",
    )
    assert process.returncode == 143, err[-2000:]
    (run,) = run_folders(cwd / "runs")
    refused = run_ednaml("fit", "--resume", str(run), cwd=cwd)  # the run folder's own target is data
    assert refused.returncode == 2 and "SAVE.CHECKPOINT_DIRECTORY" in refused.stderr and "--trust" in refused.stderr, (
        refused.stderr[-2000:]
    )
    assert summary(run)["status"] == "interrupted"
    resumed = run_ednaml("fit", "--resume", str(run), "--SAVE.CHECKPOINT_DIRECTORY", str(backups), cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run)["status"] == "finished"
    assert (backups / run.parent.name / run.name / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.e2e
def test_a_run_with_its_own_component_resumes_elsewhere_with_the_file_given_again(tmp_path):
    examples = CONFIGS.parent / "examples"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(examples / "custom_component.py", work)
    shutil.copy(examples / "focal.yml", work)
    process, _, err = stopped_at_a_checkpoint(
        [
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            "--config",
            "focal.yml",
            "--EXECUTION.EPOCHS",
            "2",
            "--SAVE.STEP_SAVE_FREQUENCY",
            "3",
            "--trainer.limit_train_batches",
            "6",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.limit_test_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ],
        work,
        pattern="runs/*/*/checkpoints/*_step3.ckpt",
    )
    assert process.returncode == 143, err[-2000:]
    (run,) = run_folders(work / "runs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(str(work / "custom_component.py"), elsewhere / "custom_component.py")  # the run's file, now elsewhere
    resumed = run_ednaml("fit", "--resume", str(run), "--import", str(elsewhere / "custom_component.py"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run)["status"] == "finished"
