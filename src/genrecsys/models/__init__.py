"""Recommenders, one per file. Look them up by name through `genrecsys.registry.MODELS`."""
