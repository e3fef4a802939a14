"""The Publisher executor: checkpoint in the store → published model bundle and handle."""
