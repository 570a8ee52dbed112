"""The per-image summary table of a sharded dataset, computed while streaming it once.

Decoding happens in the loader workers; this process sees each batch of decoded images once and
keeps one summary row per image (never the images), so memory grows with the row count only.
Images that fail to decode are not rows: they come back as skipped files, named by shard and key.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from models.data.dataset import SPLITS, SkippedFile
from models.data.sharded import ShardedDataset


def streamed_summary(
    data: ShardedDataset, batch_size: int = 256
) -> tuple[pd.DataFrame, list[SkippedFile]]:
    """A sharded dataset's summary table (as :func:`~models.validation.checks.summary_table`).

    Returns:
        The table, and the images that could not be decoded (as skipped files).
    """
    h, w, c = data.image_shape
    leaves = np.asarray(data.hierarchy.leaves, dtype=object)
    parts: list[pd.DataFrame] = []
    failed: list[SkippedFile] = []
    offset = 0
    for split in SPLITS:
        for batch in data.batches(split, batch_size):
            failed += [
                SkippedFile(
                    f"{s['source']} ({s['shard']}:{s['key']})", f"undecodable image ({s['reason']})"
                )
                for s in batch.skipped
            ]
            n = len(batch.labels)
            if n == 0:
                continue
            x = batch.images.permute(0, 2, 3, 1).numpy()  # [B, H, W, C] uint8
            flat = x.reshape(n, -1)
            labels = batch.labels.numpy()
            ok = (labels >= 0) & (labels < len(leaves))
            parts.append(
                pd.DataFrame(
                    {
                        "split": np.full(n, split, dtype=object),
                        "index": np.arange(offset, offset + n),
                        "height": np.full(n, h),
                        "width": np.full(n, w),
                        "channels": np.full(n, c),
                        "dtype": np.full(n, str(x.dtype), dtype=object),
                        "pixel_min": flat.min(axis=1).astype(np.int64),
                        "pixel_max": flat.max(axis=1).astype(np.int64),
                        "pixel_mean": flat.mean(axis=1, dtype=np.float64),
                        "pixel_std": flat.std(axis=1, dtype=np.float64),
                        "label": labels,
                        "label_name": np.where(
                            ok, leaves[np.clip(labels, 0, len(leaves) - 1)], None
                        ),
                        "digest": [
                            hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest()
                            for row in flat
                        ],
                    }
                )
            )
            offset += n
    return pd.concat(parts, ignore_index=True), failed
