"""The containers: one engine layer (engine, compose, the Container parsed from `ps`), images,
readiness, ports, the status document, and the setup/start/stop/clean/logs/health steps.
Imports tasks.core and tasks.host (start and stop include the host service)."""
