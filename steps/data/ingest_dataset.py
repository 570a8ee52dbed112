"""Step: read the configured source into the dataset artifact."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from models.data.dataset import SPLITS, LabelledImages
from models.data.ingest import DatasetConfig, build_dataset
from models.data.sharded import ShardedDataset, build_sharded_dataset
from models.reporting.plots import sample_grid_png
from steps import artifacts, tracking
from steps.materializers import LabelledImagesMaterializer, ShardedDatasetMaterializer

logger = logging.getLogger(__name__)


@step(output_materializers=[LabelledImagesMaterializer, ShardedDatasetMaterializer])
def ingest_dataset(
    config: DatasetConfig, source_fingerprint: str = ""
) -> Annotated[LabelledImages | ShardedDataset, artifacts.DATASET]:
    """Read images and labels, map them onto the tree, split them, and record the facts.

    With ``storage: shards`` the images are written as shards + a manifest into
    ``shards.uri`` (default: the artifact store's ``hiergan-shards/`` folder) and the artifact is
    the manifest: ZenML never moves the images.

    Args:
        config: the dataset section of the pipeline config.
        source_fingerprint: names/sizes/mtimes of the source files; only here so that the step's
            cache is invalidated when they change.

    Returns:
        The dataset artifact.
    """
    if config.storage == "shards":
        root = config.shards.uri or f"{Client().active_stack.artifact_store.path}/hiergan-shards"
        data: LabelledImages | ShardedDataset = build_sharded_dataset(
            config, root, source_fingerprint
        )
    else:
        data = build_dataset(config)
    facts = data.facts()
    logger.info(
        "Ingested %s: %d images %s, splits %s, hash %s, %d files skipped",
        data.name,
        facts["num_images"],
        data.image_shape,
        {s: facts["splits"][s]["count"] for s in SPLITS},
        data.content_hash[:12],
        len(data.skipped),
    )
    for skipped in data.skipped:
        logger.warning("skipped %s: %s", skipped.path, skipped.reason)
    log_metadata(
        metadata={
            "dataset_facts": facts,
            "skipped_files": [s.__dict__ for s in data.skipped],
            "source_fingerprint": source_fingerprint,
        }
    )
    tracking.log_params(
        {
            "dataset": data.name,
            "dataset_source": data.source,
            "dataset_hash": data.content_hash,
            "tree": data.hierarchy.name,
            "image_shape": "x".join(map(str, data.image_shape)),
        }
    )
    tracking.log_metrics(
        {f"{split}_images": facts["splits"][split]["count"] for split in SPLITS}
        | {"skipped_files": len(data.skipped)}
    )
    tracking.log_json(facts, "dataset/facts.json")
    tracking.log_text(data.hierarchy.describe(), "dataset/tree.txt")
    # a streamed dataset's first 2,000 (shards are written shuffled: a random sample)
    images, labels = (
        data.split("train") if isinstance(data, LabelledImages) else data.head("train", 2000)
    )
    tracking.log_png(
        sample_grid_png(images, labels, data.hierarchy.leaves), "dataset/train_samples.png"
    )
    return data
