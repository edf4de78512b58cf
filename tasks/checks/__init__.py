"""Checks a person runs: pre-flight (verify) and embeddings end to end (roundtrip)."""
