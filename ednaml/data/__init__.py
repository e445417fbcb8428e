"""Data readers: crawl a source, load samples, transform them."""

from ednaml.data.base import Crawl, Crawler, DataError, DataReader, LabelledDataset, seeded_split

__all__ = ["Crawl", "Crawler", "DataError", "DataReader", "LabelledDataset", "seeded_split"]
