"""What every run leaves behind: the run folder and the W&B run."""

from ednaml.tracking.run_folder import RunFolder, experiment_name

__all__ = ["RunFolder", "experiment_name"]
