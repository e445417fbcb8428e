"""EdnaML's version, recorded in every checkpoint, provenance.json and exported model."""

__version__ = "0.1.0"
