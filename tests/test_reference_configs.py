"""Every config written for the original EdnaML validates, or fails naming only what it needs that is missing.

Missing means a component (data reader, model, trainer, ...) that is not here, or an option of a
component that this version of it does not have (e.g. MultiBranchResnet's `soft_targets`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ednaml.api import prepare
from ednaml.config import ConfigError

REFERENCE = Path(__file__).parent / "reference_configs"


@pytest.mark.parametrize("path", sorted(REFERENCE.rglob("*.yml")), ids=lambda p: str(p.relative_to(REFERENCE)))
def test_reference_config_validates_or_names_its_missing_components(path: Path):
    try:
        prepare([path])
    except ConfigError as err:
        assert err.problems, "a ConfigError always carries problems"
        for problem in err.problems:
            missing = any(words in problem.message for words in ("is not a known", " takes no argument ", "not supported in this version"))
            assert missing, f"not a missing-component error: {problem}"
            assert problem.path, "each problem names its key path"
