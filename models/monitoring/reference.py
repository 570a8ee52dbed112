"""Is the drift reference the data the monitored model was trained on?"""

from __future__ import annotations


class ReferenceMismatchError(ValueError):
    """The reference data is not the data the model was trained on."""


def check_reference(model_hash: str, reference_hash: str, allow_mismatch: bool) -> str | None:
    """Compare the model's training-data hash with the reference's.

    A drift verdict against other data than the model's measures the difference between two
    datasets, not drift: a mismatch is an error unless ``allow_mismatch`` (then a warning).

    Returns:
        A warning when the hashes differ (allowed) or the model records none; else ``None``.

    Raises:
        ReferenceMismatchError: the hashes differ and the mismatch is not allowed.
    """
    if not model_hash:
        return "the model records no dataset hash: the reference cannot be checked"
    if model_hash == reference_hash:
        return None
    message = (
        f"the reference data (hash {reference_hash[:12]}) is not the data the model was "
        f"trained on (hash {model_hash[:12]}): set parameters.dataset to the model's training "
        "dataset"
    )
    if not allow_mismatch:
        raise ReferenceMismatchError(
            message + ", or pass --allow-reference-mismatch to compare anyway"
        )
    return message + " (allowed by allow_reference_mismatch)"
