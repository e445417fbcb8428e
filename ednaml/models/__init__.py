"""Models, and the builders that make them from MODEL."""

from ednaml.models.builders import build_model, ednaml_model_builder
from ednaml.models.classification import ClassificationResnet, SmallCNN
from ednaml.models.multi import MultiBranchResnet, MultiClassificationResnet

__all__ = [
    "ClassificationResnet",
    "MultiBranchResnet",
    "MultiClassificationResnet",
    "SmallCNN",
    "build_model",
    "ednaml_model_builder",
]
