"""Jina executors: thin services around the searchtuner library (one folder each)."""
