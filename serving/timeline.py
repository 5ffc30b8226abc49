"""A timeline of a whole video: its consecutive windows, classified in batches.

`windows()` reads the video in one streaming pass of the project's decoder
(`clip_decoder.decode_chunks`) and yields each window as `clip_inputs` would build it alone
(same frames, same samples, same JPEGs: `mbt_keras.windows` is the rule), holding only the
frames from the last window's start on, so memory does not grow with the video's length.
`classify()` sends them in batches to any predict function (a server or a SavedModel);
the writers turn the rows into CSV, JSON, a heat map and a terminal summary.
"""
import csv
import dataclasses
import json
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from components.preprocess.clip_decoder import decode_chunks
from mbt_keras import contract
from mbt_keras import windows as window_rule
from serving.client import Window, label_text, window_inputs

# Seconds the decoder hands over at a time; memory holds about one window plus one chunk.
CHUNK_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Row:
    """One classified window."""
    start: float
    end: float
    has_audio: bool
    scores: np.ndarray            # float32 [C], all class scores
    top_k: List[tuple]            # [(name, score)], best first


def windows(path: str, *, num_frames: int, seconds: float, hop: Optional[float] = None,
            **decode_options) -> Iterator[Window]:
    """Window after window of the whole video at `path`, in order: `seconds` long, every
    `hop` seconds (default: `seconds`, back to back), plus one window ending at the end when
    the last hop leaves a tail (`mbt_keras.windows.start_frames`). `decode_options` go to
    `decode_chunks` (decoder_threads, max_damaged_fraction, short_side)."""
    length = window_rule.frames_of(seconds, contract.FPS)
    step = max(1, window_rule.frames_of(hop or seconds, contract.FPS))
    cutter = _Cutter(num_frames, seconds, length)
    for chunk in decode_chunks(path, chunk_seconds=CHUNK_SECONDS, fps=contract.FPS,
                               sample_rate=contract.SAMPLE_RATE, missing_audio="silence",
                               **decode_options):
        cutter.add(chunk)
        while True:
            first = 0 if cutter.emitted is None else cutter.emitted + step
            if first + length > cutter.total:
                break
            yield cutter.cut(first, length)
    for first in window_rule.start_frames(cutter.total, length, step):
        if cutter.emitted is None or first > cutter.emitted:
            yield cutter.cut(first, min(length, cutter.total - first))


class _Cutter:
    """The decoded frames and samples from the last window's start on, cut into windows by
    the window rule; every later window (the tail one too) starts at or after the last."""

    def __init__(self, num_frames: int, seconds: float, length: int):
        self.num_frames, self.seconds, self.length = num_frames, seconds, length
        # frames[0] is frame number first_frame, audio[0] sample number first_sample.
        self.frames, self.first_frame = [], 0
        self.audio, self.first_sample = np.zeros(0, np.float32), 0
        self.emitted, self.skipped, self.has_audio = None, 0, True

    @property
    def total(self) -> int:
        return self.first_frame + len(self.frames)

    def add(self, chunk):
        self.frames.extend(chunk.frames)
        self.audio = np.concatenate([self.audio, chunk.waveform])
        self.has_audio = chunk.has_audio
        self.skipped += chunk.skipped_packets

    def cut(self, first: int, count: int) -> Window:
        start = first / contract.FPS
        seconds = self.seconds if count == self.length else count / contract.FPS
        begin = window_rule.span(start, seconds, contract.SAMPLE_RATE)[0]
        self.frames, self.first_frame = self.frames[first - self.first_frame:], first
        self.audio = self.audio[max(0, begin - self.first_sample):]
        self.first_sample = max(begin, self.first_sample)
        window = Window(inputs=window_inputs(self.frames,
                                             self.audio[begin - self.first_sample:],
                                             num_frames=self.num_frames, start=start,
                                             seconds=seconds, window_seconds=self.seconds),
                        start=start, end=start + seconds, has_audio=self.has_audio,
                        skipped_packets=self.skipped)
        self.emitted, self.skipped = first, 0
        return window


def classify(windows_: Iterable[Window], predict: Callable[[dict], dict],
             batch_size: int = 8) -> Iterator[Row]:
    """Rows of the windows, predicted `batch_size` windows per request."""
    batch = []
    for window in windows_:
        batch.append(window)
        if len(batch) == batch_size:
            yield from _predict_batch(batch, predict)
            batch = []
    if batch:
        yield from _predict_batch(batch, predict)


def _predict_batch(batch: Sequence[Window], predict) -> Iterator[Row]:
    inputs = {name: np.concatenate([w.inputs[name] for w in batch])
              for name in batch[0].inputs}
    outputs = predict(inputs)
    for i, window in enumerate(batch):
        names = [label_text(n) for n in outputs[contract.OUT_TOP_K_NAMES][i]]
        yield Row(start=window.start, end=window.end, has_audio=window.has_audio,
                  scores=np.asarray(outputs[contract.OUT_SCORES][i], np.float32),
                  top_k=list(zip(names, map(float, outputs[contract.OUT_TOP_K_SCORES][i]))))


def class_names(rows: Sequence[Row], known: Optional[Sequence[str]] = None) -> List[str]:
    """The class names in score order: `known` (a SavedModel's class list) when given, else
    learned from the top-k outputs (a name whose score equals exactly one class's score)
    and `class_<i>` for a class never seen in a top-k."""
    if known:
        return list(known)
    names = {}
    for row in rows:
        for name, score in row.top_k:
            match = np.flatnonzero(row.scores == np.float32(score))
            if len(match) == 1:
                names.setdefault(int(match[0]), name)
    return [names.get(i, f"class_{i}") for i in range(len(rows[0].scores))] if rows else []


def write_csv(rows: Sequence[Row], path: str):
    """start, end, has_audio, then label_1, score_1, ... of the top-k."""
    k = max((len(r.top_k) for r in rows), default=0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["start", "end", "has_audio"] +
                        [c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")])
        for row in rows:
            writer.writerow([f"{row.start:.3f}", f"{row.end:.3f}", int(row.has_audio)] +
                            [c for name, score in row.top_k for c in (name, f"{score:.6f}")])


def write_json(rows: Sequence[Row], names: Sequence[str], path: str, video: str):
    """{'video', 'classes', 'windows': [{start, end, has_audio, top_k, scores}]}."""
    document = {"video": video, "classes": list(names), "windows": [
        {"start": round(r.start, 3), "end": round(r.end, 3), "has_audio": r.has_audio,
         "top_k": [{"label": n, "score": s} for n, s in r.top_k],
         "scores": [float(s) for s in r.scores]} for r in rows]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)


def plot(rows: Sequence[Row], names: Sequence[str], path: str, top: int = 10):
    """A heat map of the `top` classes (by their highest score) over time."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    scores = np.stack([r.scores for r in rows])             # [windows, classes]
    shown = np.argsort(-scores.max(axis=0))[:top]
    starts = [r.start for r in rows]
    edges = starts + [rows[-1].end]
    figure, axes = plt.subplots(figsize=(min(16, 4 + len(rows) / 8), 1 + 0.4 * len(shown)))
    image = axes.pcolormesh(edges, np.arange(len(shown) + 1), scores[:, shown].T,
                            cmap="viridis", vmin=0, vmax=1, shading="flat")
    axes.set_yticks(np.arange(len(shown)) + 0.5, [names[i] for i in shown])
    axes.invert_yaxis()
    axes.set_xlabel("seconds")
    figure.colorbar(image, ax=axes, label="score")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summary(rows: Sequence[Row], most: int = 3) -> str:
    """The dominant labels (top-1 of most windows) and the stretches where they lead."""
    if not rows:
        return "no windows"
    stretches = []  # [label, start, end] of consecutive windows with the same top-1 label
    for row in rows:
        label = row.top_k[0][0]
        if stretches and stretches[-1][0] == label:
            stretches[-1][2] = row.end
        else:
            stretches.append([label, row.start, row.end])
    counts = {}
    for row in rows:
        counts[row.top_k[0][0]] = counts.get(row.top_k[0][0], 0) + 1
    lines = [f"{len(rows)} windows, {rows[0].start:.1f}-{rows[-1].end:.1f} s"]
    for label, n in sorted(counts.items(), key=lambda item: -item[1])[:most]:
        spans = sorted((s for s in stretches if s[0] == label), key=lambda s: s[1] - s[2])[:3]
        when = ", ".join(f"{_clock(s[1])}-{_clock(s[2])}"
                         for s in sorted(spans, key=lambda s: s[1]))
        lines.append(f"  {label:<20} top in {n}/{len(rows)} windows, longest at {when}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"
