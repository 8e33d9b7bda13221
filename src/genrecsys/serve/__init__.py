"""Serving: top-K recommendation from a trained model."""
