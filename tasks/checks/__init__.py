"""Checks a person runs: pre-flight (verify) and embeddings and reranking end to end (roundtrip)."""
