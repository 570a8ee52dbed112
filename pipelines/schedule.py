"""Cron schedules for ``--schedule``: checked here, so a typo fails before anything is submitted."""

from __future__ import annotations

# croniter comes with ZenML (its native schedules use it); Kubernetes' CronJob takes the same
# five-field syntax and the @-macros below.
from croniter import croniter
from zenml.config.schedule import Schedule

from pipelines.run_config import ConfigError

# The macros a Kubernetes CronJob accepts besides five fields.
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_schedule(expression: str, name: str | None = None) -> Schedule:
    """A ZenML cron ``Schedule`` (on Kubernetes, a batch/v1 CronJob).

    Args:
        expression: five cron fields (minute hour day-of-month month day-of-week), e.g.
            ``"0 3 * * 0"`` for Sundays at 03:00 in the cluster's time zone, or a macro such
            as ``@daily``.
        name: the schedule's name in ZenML (default: generated from the pipeline name).

    Raises:
        ConfigError: when the expression is not one a CronJob accepts.
    """
    expression = " ".join(expression.split())
    if expression in CRON_MACROS:
        return Schedule(name=name, cron_expression=expression)
    fields = expression.split(" ")
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise ConfigError(
            f"--schedule {expression!r}: expected five cron fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 0') "
            f"or one of {', '.join(sorted(CRON_MACROS))}"
        )
    return Schedule(name=name, cron_expression=expression)
