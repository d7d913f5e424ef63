"""cronhub: a standalone job-scheduler daemon with a CLI."""

__version__ = "0.1.0"
