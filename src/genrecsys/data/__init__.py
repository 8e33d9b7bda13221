"""Data layer: one canonical schema, loaders per format, filters, splits, cold-start."""
from genrecsys.data.schema import Dataset

__all__ = ["Dataset"]
