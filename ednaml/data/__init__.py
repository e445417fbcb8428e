"""Data readers: crawl a source, load samples, transform them."""

from ednaml.data.base import Crawl, Crawler, DataReader, LabelledDataset, seeded_split
from ednaml.errors import DataError

__all__ = ["Crawl", "Crawler", "DataError", "DataReader", "LabelledDataset", "seeded_split"]
