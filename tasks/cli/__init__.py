"""The thin @task modules: parse flags, call the packages below, print. namespace.py builds
the root collection that tasks.py hands to invoke (with the seed's spellings)."""
