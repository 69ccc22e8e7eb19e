"""Batch selectors for training loops (no Ray, no curate run): `jest`."""
