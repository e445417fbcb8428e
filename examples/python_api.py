"""Run the digits experiment from Python, then evaluate its last checkpoint in a run of its own."""

from pathlib import Path

from ednaml import EdnaML

config = Path(__file__).resolve().parents[1] / "configs" / "digits.yml"
trained = EdnaML(config, overrides={"EXECUTION.EPOCHS": 3, "OPTIMIZER.0.BASE_LR": 0.005}).fit()
print("fit:", trained["status"], trained["final"]["test/accuracy"], trained["run_dir"])

tested = EdnaML(ckpt_path=trained["checkpoints"]["last"]).test()
print("test:", tested["final"]["test/accuracy"], tested["run_dir"])
