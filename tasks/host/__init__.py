"""The host embedding service as a process on this machine: its venv, PID file and lock,
process group, log files, detached and attached (foreground, watch) supervision, health
probing, stop, and who holds a port. Imports only tasks.core."""
