"""Benchmark decontamination: find benchmark items leaked into the corpus.

See docs/contamination.md.
"""
