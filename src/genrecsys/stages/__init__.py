"""Stages of the main job (genrecsys.pipeline) beyond the backbones: one seed system per
file. Each stage trains into ``<output>/<stage>/``, returns a plain dict of its results
(also written as ``<stage>.json``) and renders its own report section with a plot.

Importing this package does not import torch.
"""
