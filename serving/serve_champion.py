"""``make serve``: serve the registry's champion over HTTP on 127.0.0.1.

The champion's version records the bento it was packaged in (tag ``bento_tag``); that bento is
served when the local BentoML store has it. Otherwise the champion's classifier is downloaded
from the registry and served by the same service class.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger(__name__)


def serve_command(alias: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment that serve ``alias``."""
    import bentoml
    from bentoml.exceptions import NotFound

    from registry.stack import use_stack_tracking_uri
    from registry.versions import load_classifier, version_by_alias

    use_stack_tracking_uri()
    mv = version_by_alias(alias)
    if mv is None:
        raise SystemExit(f"no {alias!r} model in the registry: run train, then promote")
    env = dict(os.environ)
    base = [sys.executable, "-m", "bentoml", "serve", "--host", host, "--port", str(port)]
    bento_tag = mv.tags.get("bento_tag", "")
    try:
        if bento_tag:
            bentoml.get(bento_tag)
            logger.info("serving %s version %s from bento %s", alias, mv.version, bento_tag)
            return [*base, bento_tag], env
    except NotFound:
        logger.info("bento %s is not in the local store: serving from the registry", bento_tag)
    classifier, tags = load_classifier(alias)
    directory = os.path.join(os.path.expanduser("~"), ".cache", "hiergan", f"v{tags['version']}")
    classifier.save(directory)
    env["HIERGAN_MODEL_DIR"] = directory
    return [*base, "serving.service:HierganService"], env


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m serving.serve_champion [--alias champion] [--host] [--port]``."""
    from models.runtime.environment import quiet_telemetry

    quiet_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    command, env = serve_command(args.alias, args.host, args.port)
    logger.info("%s", " ".join(command))
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
