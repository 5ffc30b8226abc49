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
from serving.client import Window, window_inputs

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
    fps, rate = contract.FPS, contract.SAMPLE_RATE
    length = window_rule.frames_of(seconds, fps)
    step = max(1, window_rule.frames_of(hop or seconds, fps))
    frames, first_frame = [], 0                        # buffered frames, index of frames[0]
    audio, first_sample = np.zeros(0, np.float32), 0   # buffered samples, index of audio[0]
    state = {"emitted": None, "skipped": 0, "has_audio": True}

    def take(first: int, count: int) -> Window:
        nonlocal frames, first_frame, audio, first_sample
        start = first / fps
        window_seconds = seconds if count == length else count / fps
        begin, samples = window_rule.span(start, window_seconds, rate)
        waveform = audio[begin - first_sample:begin - first_sample + samples]
        waveform = np.pad(waveform, (0, samples - len(waveform)))
        window = Window(inputs=window_inputs(frames[first - first_frame:][:count], waveform,
                                             num_frames),
                        start=start, end=start + window_seconds,
                        has_audio=state["has_audio"], skipped_packets=state["skipped"])
        # A later window starts at or after this one (the tail one too): forget what is before.
        frames, first_frame = frames[first - first_frame:], first
        audio, first_sample = audio[max(0, begin - first_sample):], max(begin, first_sample)
        state.update(emitted=first, skipped=0)
        return window

    for chunk in decode_chunks(path, chunk_seconds=CHUNK_SECONDS, fps=fps, sample_rate=rate,
                               missing_audio="silence", **decode_options):
        frames.extend(chunk.frames)
        audio = np.concatenate([audio, chunk.waveform])
        state["has_audio"] = chunk.has_audio
        state["skipped"] += chunk.skipped_packets
        while True:
            emitted = state["emitted"]
            first = 0 if emitted is None else emitted + step
            if first + length > first_frame + len(frames):
                break
            yield take(first, length)
    total = first_frame + len(frames)
    for first in window_rule.start_frames(total, length, step):
        if state["emitted"] is None or first > state["emitted"]:
            yield take(first, min(length, total - first))


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
        names = [_text(n) for n in outputs[contract.OUT_TOP_K_NAMES][i]]
        yield Row(start=window.start, end=window.end, has_audio=window.has_audio,
                  scores=np.asarray(outputs[contract.OUT_SCORES][i], np.float32),
                  top_k=list(zip(names, map(float, outputs[contract.OUT_TOP_K_SCORES][i]))))


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


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
        if stretches and stretches[-1][0] == label and row.start <= stretches[-1][2] + 1e-6:
            stretches[-1][2] = row.end
        else:
            stretches.append([label, row.start, row.end])
    counts = {}
    for row in rows:
        counts[row.top_k[0][0]] = counts.get(row.top_k[0][0], 0) + 1
    lines = [f"{len(rows)} windows, {rows[0].start:.1f}-{rows[-1].end:.1f} s"]
    for label, n in sorted(counts.items(), key=lambda item: -item[1])[:most]:
        spans = sorted((s for s in stretches if s[0] == label), key=lambda s: s[1] - s[2])[:3]
        when = ", ".join(f"{_clock(s[1])}-{_clock(s[2])}" for s in sorted(spans, key=lambda s: s[1]))
        lines.append(f"  {label:<20} top in {n}/{len(rows)} windows, longest at {when}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"
