"""Evaluation: metrics as pure numpy functions, ranking protocols, significance, reports."""
