"""cortex-dev task modules: thin @task functions and the plain-Python logic they call."""
