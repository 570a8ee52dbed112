"""``python -m registry`` (``make registry``): the local stack's registered versions as a table."""

from registry.stack import use_stack_tracking_uri
from registry.versions import describe_registry


def main() -> None:
    """Print the registered model's versions, aliases and key tags."""
    use_stack_tracking_uri()
    print(describe_registry())


if __name__ == "__main__":
    main()
