"""Streaming a sharded split with bounded memory: tar shards -> shuffle buffer -> decode -> batches.

The shards are WebDataset tar files (one sample = ``<key>.<img ext>`` + ``<key>.cls`` +
``<key>.ord``), read through fsspec from a local folder or object storage (``s3://``). Each
DataLoader worker of each rank reads its own shards (or, with fewer shards than readers, every
shard and keeps every ``readers``-th sample), shuffles the *encoded* samples in a buffer of
``shuffle_buffer``, and only then decodes and resizes them, so memory is bounded by the buffer
and the prefetched batches, whatever the dataset's size. Batches are assembled inside the
worker, so a batch always holds ``batch_size`` images even when some failed to decode: those are
skipped, and the batch carries their names (shard, key, reason) to the consumer, which counts
them. Each shard's SHA-256 is computed while it is read and compared with the manifest's at its
end: a shard that does not match fails the run naming it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from models.data.dataset import DatasetError
from models.data.images import decode_image

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")


class ShardError(DatasetError):
    """A shard or manifest does not match; the message names it."""


@dataclass(frozen=True)
class ShardRef:
    """Where one shard is and what it must hash to."""

    url: str
    count: int
    sha256: str


@dataclass
class StreamSpec:
    """What a stream reads and how (plain data: it travels to the loader workers).

    Attributes:
        shards: the split's shards, in manifest order.
        image_size: decoded images are ``image_size`` square ...
        channels: ... with 1 or 3 channels.
        batch_size: images per batch (this rank's share of a global batch).
        shuffle_buffer: encoded samples held for shuffling; 0 reads in shard order.
        seed: shuffling seed (with the epoch, the same on every rank).
        repeat: loop over epochs forever (training) or stop after one pass (evaluation).
        drop_last: drop an incomplete last batch of a pass.
        rank: this process's rank ...
        world_size: ... among this many.
        quotas: keep only samples whose per-class ordinal is below ``quotas[class]`` (a
            stratified labelled subset); None keeps all.
        verify: compare each fully read shard's SHA-256 with the manifest's.
    """

    shards: list[ShardRef]
    image_size: int
    channels: int
    batch_size: int
    shuffle_buffer: int = 2000
    seed: int = 0
    repeat: bool = False
    drop_last: bool = False
    rank: int = 0
    world_size: int = 1
    quotas: list[int] | None = None
    verify: bool = True
    start_epoch: int = 0


@dataclass
class Batch:
    """Decoded images ``[B, C, H, W]`` uint8, leaf labels ``[B]``, and the samples skipped."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: list[dict[str, str]] = field(default_factory=list)


class ShardStream(IterableDataset):
    """An iterable of :class:`Batch` es over one split's shards (see the module docstring)."""

    def __init__(self, spec: StreamSpec) -> None:
        super().__init__()
        if not spec.shards:
            raise ShardError("a stream needs at least one shard")
        self.spec = spec

    def __iter__(self) -> Iterator[Batch]:
        spec = self.spec
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        readers = spec.world_size * workers
        reader = spec.rank * workers + worker
        epoch = spec.start_epoch
        while True:
            yield from self._batches(self._samples(epoch, reader, readers), epoch, reader)
            epoch += 1
            if not spec.repeat:
                return

    def _samples(self, epoch: int, reader: int, readers: int) -> Iterator[dict[str, Any]]:
        """This reader's encoded samples of one pass, before shuffling."""
        spec = self.spec
        order = list(range(len(spec.shards)))
        if spec.shuffle_buffer:
            random.Random(f"{spec.seed}:{epoch}").shuffle(order)  # same order on every reader
        if len(order) >= readers:
            mine, keep = order[reader::readers], None
        else:  # fewer shards than readers: everyone reads everything, keeps its share
            mine, keep = order, (reader, readers)
        position = 0
        for i in mine:
            for sample in read_shard(spec.shards[i], spec.verify):
                position += 1
                if keep is not None and (position - 1) % keep[1] != keep[0]:
                    continue
                if spec.quotas is not None and sample["ord"] >= spec.quotas[sample["cls"]]:
                    continue
                yield sample

    def _batches(
        self, samples: Iterator[dict[str, Any]], epoch: int, reader: int
    ) -> Iterator[Batch]:
        spec = self.spec
        if spec.shuffle_buffer:
            samples = _shuffled(samples, spec.shuffle_buffer, f"{spec.seed}:{epoch}:{reader}")
        images: list[np.ndarray] = []
        labels: list[int] = []
        skipped: list[dict[str, str]] = []
        for sample in samples:
            try:
                images.append(decode_image(sample["img"], spec.image_size, spec.channels))
                labels.append(sample["cls"])
            except Exception as err:  # noqa: BLE001 - any decoding failure means "skip it"
                skipped.append(
                    {
                        "source": sample["src"],
                        "shard": sample["shard"],
                        "key": sample["key"],
                        "reason": str(err)[:200],
                    }
                )
            if len(images) == spec.batch_size:
                yield _batch(images, labels, skipped)
                images, labels, skipped = [], [], []
        if images and not spec.drop_last:
            yield _batch(images, labels, skipped)
        elif skipped:  # nothing left to carry them: an empty batch still reports them
            yield _batch([], [], skipped, spec)


def _batch(
    images: list[np.ndarray],
    labels: list[int],
    skipped: list[dict[str, str]],
    spec: StreamSpec | None = None,
) -> Batch:
    if images:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    else:
        assert spec is not None
        x = torch.zeros((0, spec.channels, spec.image_size, spec.image_size), dtype=torch.uint8)
    return Batch(x, torch.as_tensor(labels, dtype=torch.int64), skipped)


def _shuffled(samples: Iterator[Any], size: int, seed: str) -> Iterator[Any]:
    """A shuffle buffer of ``size`` items (WebDataset's scheme, seeded)."""
    rng = random.Random(seed)
    buf: list[Any] = []
    for sample in samples:
        if len(buf) < size:
            buf.append(sample)
            continue
        k = rng.randrange(len(buf))
        buf[k], sample = sample, buf[k]
        yield sample
    rng.shuffle(buf)
    yield from buf


def read_shard(shard: ShardRef, verify: bool = True) -> Iterator[dict[str, Any]]:
    """The samples of one shard, encoded, with its SHA-256 checked at the end when ``verify``.

    Yields:
        ``{"key", "shard", "src", "img": bytes, "ext", "cls": int, "ord": int}`` per sample.

    Raises:
        ShardError: naming the shard, when it is unreadable, malformed or does not match.
    """
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    name = shard.url.rsplit("/", 1)[-1]
    count = 0
    try:
        with fsspec.open(shard.url, "rb") as raw:
            stream = _HashingReader(raw)
            files = (dict(f, __url__=shard.url) for f in tar_file_iterator(stream))
            for sample in group_by_keys(files):
                count += 1
                yield _parse(sample, name)
            stream.drain()
    except ShardError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ShardError(f"shard {shard.url} is unreadable: {err}") from err
    if verify and stream.hexdigest() != shard.sha256:
        raise ShardError(
            f"shard {shard.url} does not match its manifest: SHA-256 {stream.hexdigest()[:16]}... "
            f"!= {shard.sha256[:16]}... (the shard or the manifest was modified)"
        )
    if verify and count != shard.count:
        raise ShardError(
            f"shard {shard.url} holds {count} samples, its manifest says {shard.count}"
        )


def _parse(sample: dict[str, Any], shard: str) -> dict[str, Any]:
    key = sample["__key__"]
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None or "cls" not in sample or "ord" not in sample:
        raise ShardError(f"shard {shard}: sample {key!r} lacks an image, .cls or .ord")
    return {
        "key": key,
        "shard": shard,
        "img": sample[ext],
        "ext": ext,
        "cls": int(sample["cls"]),
        "ord": int(sample["ord"]),
        "src": sample["src"].decode() if isinstance(sample.get("src"), bytes) else key,
    }


class _HashingReader:
    """A read-only file object that hashes every byte read through it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever tar left unread: its end-of-archive padding."""
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def make_loader(spec: StreamSpec, workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of :class:`Batch` es; decoding runs in ``workers`` processes."""
    return DataLoader(
        ShardStream(spec),
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0 and spec.repeat,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=pin_memory,
        collate_fn=_identity,
    )


def _identity(batch: Batch) -> Batch:
    return batch


class SkipCounter:
    """Collects the skipped samples that batches report (names kept up to ``keep``)."""

    def __init__(self, keep: int = 1000) -> None:
        self.count = 0
        self.keep = keep
        self.names: list[dict[str, str]] = []

    def add(self, batch: Batch) -> Batch:
        """Record ``batch.skipped``; return the batch."""
        self.count += len(batch.skipped)
        room = self.keep - len(self.names)
        if room > 0:
            self.names += batch.skipped[:room]
        return batch


class StreamedImages:
    """A split streamed for training, as the training loops consume it: endless local batches.

    Built by :meth:`models.data.sharded.ShardedDataset.streamed`. :meth:`start` fixes this
    rank's batch size and the seed; the loader (and its worker processes) starts at the first
    :meth:`next_batch`, at the epoch the run's step has reached, so a resumed run does not replay
    the epochs it already trained on.
    """

    def __init__(
        self,
        shards: list[ShardRef],
        count: int,
        class_counts: list[int],
        image_size: int,
        channels: int,
        shuffle_buffer: int,
        workers: int,
    ) -> None:
        self.shards, self.count, self.class_counts = shards, count, class_counts
        self.image_size, self.channels = image_size, channels
        self.shuffle_buffer, self.workers = shuffle_buffer, workers
        self.skips = SkipCounter()
        self._iter: Iterator[Batch] | None = None
        self._spec: StreamSpec | None = None

    def __len__(self) -> int:
        return self.count

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the decoded images."""
        return (self.image_size, self.image_size, self.channels)

    def start(self, local_batch: int, seed: int, dist: Any, label_fraction: float = 1.0) -> int:
        """Set this rank's batch size, the seed, the rank (a ``Dist``) and the share of each class.

        ``label_fraction`` below 1 keeps a stratified subset: per class, the images whose ordinal
        within their class is below the class's quota.

        Returns:
            How many images the stream holds.
        """
        quotas = None
        if label_fraction < 1.0:
            quotas = [max(1, round(c * label_fraction)) if c else 0 for c in self.class_counts]
        self._spec = StreamSpec(
            self.shards,
            self.image_size,
            self.channels,
            local_batch,
            shuffle_buffer=self.shuffle_buffer,
            seed=seed,
            repeat=True,
            drop_last=True,
            rank=dist.rank,
            world_size=dist.world_size,
            quotas=quotas,
        )
        self._iter = None
        return self.count if quotas is None else sum(quotas)

    def next_batch(self, device: torch.device, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``[B, C, H, W]`` uint8 images and ``[B]`` labels on ``device``.

        Images that fail to decode are skipped and counted in :attr:`skips`.
        """
        if self._spec is None:
            raise RuntimeError("StreamedImages.start() was not called")
        if self._iter is None:
            global_batch = self._spec.batch_size * self._spec.world_size
            self._spec.start_epoch = step * global_batch // max(1, self.count)
            self._iter = iter(make_loader(self._spec, self.workers, device.type == "cuda"))
        batch = self.skips.add(next(self._iter))
        while len(batch.labels) == 0:  # a batch that only reports skipped images
            batch = self.skips.add(next(self._iter))
        return batch.images.to(device, non_blocking=True), batch.labels.to(device)

    def labelled(self, fraction: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """A stratified ``fraction`` of the split (at least one image per class) on ``device``.

        Returns:
            ``[N, C, H, W]`` uint8 images and ``[N]`` labels.
        """
        quotas = [max(1, round(c * fraction)) if c else 0 for c in self.class_counts]
        spec = StreamSpec(
            self.shards, self.image_size, self.channels, 256, shuffle_buffer=0, quotas=quotas
        )
        images, labels = [], []
        for batch in make_loader(spec, self.workers):
            self.skips.add(batch)
            images.append(batch.images)
            labels.append(batch.labels)
        return torch.cat(images).to(device), torch.cat(labels).to(device)
