"""Measuring the service: `inv bench` (speed as ratios against a peer, every shape of work)
and `inv stress` (hostile load). scripts/ run in other venvs (the service's, the peer's);
data/ holds the corpora."""
