"""``--schedule``: cron expressions a Kubernetes CronJob accepts, and clear errors otherwise."""

from __future__ import annotations

import pytest

from pipelines.run_config import ConfigError
from pipelines.schedule import cron_schedule


@pytest.mark.parametrize("expression", ["0 3 * * 0", "*/15 * * * *", "0  3 * * 1-5", "@daily"])
def test_valid_expressions_become_cron_schedules(expression: str) -> None:
    schedule = cron_schedule(expression, name="weekly")
    assert schedule.cron_expression == " ".join(expression.split())
    assert schedule.name == "weekly"


@pytest.mark.parametrize("expression", ["0 3 * *", "0 0 3 * * 0", "61 3 * * 0", "weekly", ""])
def test_invalid_expressions_name_the_option_and_the_form(expression: str) -> None:
    with pytest.raises(ConfigError, match=r"--schedule .*expected five cron fields"):
        cron_schedule(expression)
