"""Sequence models. Each module holds one model: its config schema and its maths."""
