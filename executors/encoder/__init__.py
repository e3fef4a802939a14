"""The Encoder executor: a published model fills `embedding` on documents."""
