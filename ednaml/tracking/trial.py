"""The run side of a sweep trial: an `ednaml fit` started by `ednaml sweep` learns its study and trial
from the EDNAML_SWEEP_TRIAL environment variable, records its run folder with the trial, and reports its
METRIC to Optuna after each epoch's validation (adapters.callbacks.SweepPruning), which may prune it.

The variable holds the storage's address, which may carry credentials: it is never written to the run
folder (provenance records the study and trial number only).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TRIAL_ENV = "EDNAML_SWEEP_TRIAL"


@dataclass(frozen=True)
class TrialLink:
    storage: str  # an Optuna RDB URL, or journal:PATH
    study: str
    number: int
    metric: str
    sampled: dict[str, Any]
    pruner: tuple[str, dict[str, Any]]  # Optuna keeps no pruner with a study: each process makes its own

    @classmethod
    def from_env(cls) -> TrialLink | None:
        text = os.environ.get(TRIAL_ENV)
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            from ednaml.errors import ConfigError

            raise ConfigError(
                f"{TRIAL_ENV} is set but is not a sweep trial (`ednaml sweep` sets it for the runs it starts): "
                "unset it to run on your own"
            ) from None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    def describe(self) -> dict[str, Any]:
        """What provenance.json records: the study, the trial and its sampled values (not the storage)."""
        return {"study": self.study, "trial": self.number, "metric": self.metric, "sampled": self.sampled}

    def record_run(self, path: Any) -> None:
        """The trial's run folder, with the trial, so the sweep finds its result (and resumes it)."""
        trial = self.trial()
        trial.set_user_attr("run", str(Path(path).resolve()))

    def trial(self) -> Any:
        """The Optuna trial, from the study's storage."""
        import optuna

        from ednaml.sweeps.space import make_pruner

        study = optuna.load_study(
            study_name=self.study, storage=open_storage(self.storage), pruner=make_pruner(*self.pruner)
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
        return optuna.trial.Trial(study, trial_id)


def open_storage(address: str) -> Any:
    """An Optuna storage from an address: an RDB URL (sqlite:///study.db, postgresql://..., mysql://...) or
    journal:PATH, a journal file that processes on one machine, or on a shared file system, can share."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if address.startswith("journal:"):
        return optuna.storages.JournalStorage(JournalFileBackend(address.removeprefix("journal:")))
    return optuna.storages.RDBStorage(address)


def shown_storage(address: str) -> str:
    """A storage address fit to print and record: an RDB URL without its credentials or query string."""
    from ednaml.tracking.secrets import scrub_text

    if address.startswith("journal:"):
        return scrub_text(address)
    try:
        from sqlalchemy.engine import make_url

        return scrub_text(make_url(address).set(query={}).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: show its scheme alone
        return address.split("://", 1)[0] + "://***"


def sweep_trial() -> TrialLink | None:
    """The trial this process runs, where `ednaml sweep` started it."""
    return TrialLink.from_env()
