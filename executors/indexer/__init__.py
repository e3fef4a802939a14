"""The Indexer executor: an exact in-memory index of embedded documents for the search Flow."""
