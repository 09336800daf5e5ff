"""Datasets: spec strings, standard on-disk formats, and every in-memory form as batches."""

from spikeport.data.arrays import ArrayDataset
from spikeport.data.batches import as_batches, resolved, sample_count
from spikeport.data.cache import cache_dir
from spikeport.data.specs import load_dataset

__all__ = ["ArrayDataset", "as_batches", "cache_dir", "load_dataset", "resolved", "sample_count"]
