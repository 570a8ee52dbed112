"""Say why a pipeline run failed, in the failing step's own words."""

from __future__ import annotations


def failure_reason(pipeline_name: str, error: BaseException) -> str:
    """The exception messages of the failed steps of the pipeline's last run.

    ZenML's local orchestrator raises a generic "failure in step(s)" error; the step's own
    message (a gate's list of failed checks, say) is stored with the step run.
    """
    try:
        from zenml.client import Client

        run = Client().get_pipeline(pipeline_name).last_run
        messages = [
            f"{name}: {step.exception_info.message}"
            for name, step in run.steps.items()
            if step.status.value == "failed" and step.exception_info is not None
        ]
    except Exception:  # noqa: BLE001 - the store may be unreachable: fall back to the error itself
        messages = []
    return "\n".join(messages) or f"{type(error).__name__}: {error}"
