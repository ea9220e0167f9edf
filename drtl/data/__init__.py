"""Paired datasets: folders + manifests, importers, few-shot splits, patch sampling, the built-in
sample, registration and validation. Import the submodules (this package imports nothing).
"""
