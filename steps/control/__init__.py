"""Control stage: steps that decide whether and how a run goes on (the one-run-at-a-time lock)."""

from steps.control.guard_training_run import guard_training_run

__all__ = ["guard_training_run"]
