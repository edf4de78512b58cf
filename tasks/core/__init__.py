"""What every other package builds on, and nothing of the stack's own: settings and URLs,
loopback HTTP, waiting (poll_until), free ports, printing to a person, running a program (sh),
venvs, the --mlx-flag parser. Imports nothing from tasks/."""
