"""Decode one clip with PyAV into the paper's inputs (4.2): RGB frames at a fixed fps and
16 kHz mono audio, trimmed to [start, end).

Shared by the Beam job and by serving (`mbt predict`), so a clip is decoded the same way for
training and for inference. Bad input raises `ClipError` whose `kind` names the failure
(the Beam job turns it into a dead-letter record and a counter).
"""
import dataclasses
import math
import os
from typing import BinaryIO, Optional, Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mbt_keras.compat import AV_OPEN_OPTIONS

MISSING_AUDIO_POLICIES = ("reject", "silence")
# Labelled segments often end a few frames after the last decoded frame (AudioSet's 10 s
# windows on 9.98 s downloads); smaller overshoots are clamped, not rejected.
END_TOLERANCE_S = 0.1
# A video stream that stops this much before its declared length was cut short.
TRUNCATION_TOLERANCE_S = 0.5
# Leading bytes of the containers FFmpeg reads for video: an unreadable file that starts
# like one of these is a damaged video, anything else is not a video at all.
_CONTAINER_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"OggS"),
                    (0, b"FLV"), (0, b"\x00\x00\x01\xba"), (0, b"\x47"), (4, b"moov"),
                    (4, b"mdat"), (4, b"free"), (4, b"wide"))


class ClipError(ValueError):
    """A clip that cannot become a training example; `kind` is a short counter name."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray      # uint8 [N, H, W, 3], N = floor(duration * fps)
    waveform: np.ndarray    # float32 [S], S = round(duration * sample_rate), mono in [-1, 1]
    fps: float
    sample_rate: int
    has_audio: bool
    duration: float         # seconds stored
    start: float            # seconds into the source
    end: float


def decode_clip(source: Union[str, BinaryIO], *, fps: float = 25, short_side: Optional[int] = 256,
                sample_rate: int = 16000, start: Optional[float] = None,
                end: Optional[float] = None, missing_audio: str = "reject",
                min_duration: float = 0.0, name: Optional[str] = None,
                decoder_threads: int = 0) -> DecodedClip:
    """Decodes `source` (a path or a binary file object, e.g. read through tf.io.gfile).

    Frames are picked by timestamp (the decoded frame nearest to start + k / fps), so any
    source frame rate maps to `fps`; the shorter side is resized to `short_side` (None keeps
    the size). Audio of any rate and layout is resampled by FFmpeg to mono `sample_rate`.
    `missing_audio`: 'reject' (default) raises for a file without an audio stream, 'silence'
    keeps it with zeros and has_audio=False. `min_duration` rejects clips shorter than that.
    `decoder_threads`: 0 lets FFmpeg decode one clip on every core (frame + slice threads, best
    for one clip at a time, e.g. serving); 1 decodes in the calling thread, which is cheaper in
    total when a job decodes several clips in parallel (docs/benchmarks.md).
    """
    if missing_audio not in MISSING_AUDIO_POLICIES:
        raise ValueError(f"missing_audio={missing_audio!r}: expected one of {MISSING_AUDIO_POLICIES}")
    label = name or (source if isinstance(source, str) else getattr(source, "name", "<stream>"))
    if isinstance(source, str) and not os.path.exists(source):
        raise ClipError("missing_file", f"missing file: {label} does not exist")
    if start is not None and start < 0 or end is not None and end <= (start or 0.0):
        raise ClipError("out_of_range", f"invalid window start={start} end={end} for {label}: "
                        "need 0 <= start < end")
    try:
        container = av.open(source, **AV_OPEN_OPTIONS)
    except (av.error.FFmpegError, OSError) as error:
        raise _unreadable(source, label, error) from None
    with container:
        return _decode(container, label, fps=fps, short_side=short_side,
                       sample_rate=sample_rate, start=start, end=end,
                       missing_audio=missing_audio, min_duration=min_duration,
                       decoder_threads=decoder_threads)


def _unreadable(source, label, error) -> ClipError:
    head = b""
    try:
        if isinstance(source, str):
            with open(source, "rb") as f:
                head = f.read(16)
        else:
            source.seek(0)
            head = source.read(16)
    except OSError:
        pass
    if any(head[offset:offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC):
        return ClipError("corrupt", f"corrupt or truncated video file {label}: FFmpeg cannot "
                         f"read its container ({error})")
    return ClipError("not_a_video", f"not a video file: {label} is no container FFmpeg "
                     f"recognises ({error})")


def _decode(container, label, *, fps, short_side, sample_rate, start, end, missing_audio,
            min_duration, decoder_threads) -> DecodedClip:
    if not container.streams.video:
        raise ClipError("not_a_video", f"not a video file: {label} has no video stream")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    if audio is None and missing_audio == "reject":
        raise ClipError("no_audio", f"no audio stream in {label} (missing_audio='reject'; "
                        "'silence' keeps it with silent audio and has_audio=0)")
    declared = container.duration / av.time_base if container.duration else None
    video_declared = float(video.duration * video.time_base) if video.duration else None
    first = start or 0.0
    if declared is not None and first >= declared:
        raise ClipError("out_of_range", f"start {first:.2f} s is outside {label} "
                        f"(0-{declared:.2f} s)")
    if declared is not None and end is not None and end > declared + END_TOLERANCE_S:
        raise ClipError("too_short", f"clip shorter than asked: {label} ends at "
                        f"{declared:.2f} s, the window asks {first:.2f}-{end:.2f} s")
    if decoder_threads != 1:
        video.thread_type = "AUTO"
    video.thread_count = decoder_threads
    if first > 1.0:
        container.seek(int(first / video.time_base), stream=video, backward=True)

    picker = _FramePicker(first, end, fps, video, short_side)
    chunks, samples, audio_start, stopped_early = [], 0, None, False
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    streams = [video] + ([audio] if audio is not None else [])
    try:
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    picker.add(frame)
                else:
                    if audio_start is None and frame.time is not None:
                        audio_start = frame.time
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
                        samples += len(chunks[-1])
            if picker.done and (audio is None or
                                samples / sample_rate + (audio_start or 0.0) >= picker.end):
                stopped_early = True
                break
        if audio is not None:
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.error.FFmpegError as error:
        raise ClipError("corrupt", f"corrupt video file {label}: decoding failed ({error})") from None

    frames, last_end = picker.finish()
    if last_end is None:
        raise ClipError("corrupt", f"corrupt or truncated video file {label}: no video frame "
                        f"decoded at or after {first:.2f} s")
    if not stopped_early and video_declared and \
            last_end < video_declared - TRUNCATION_TOLERANCE_S:
        raise ClipError("corrupt", f"truncated video file {label}: video stops at "
                        f"{last_end:.2f} s, its header declares {video_declared:.2f} s")
    stop = end if end is not None else last_end
    if stop > last_end + END_TOLERANCE_S:
        kind = "corrupt" if declared and last_end < declared - END_TOLERANCE_S else "too_short"
        what = "truncated video file" if kind == "corrupt" else "clip shorter than asked"
        raise ClipError(kind, f"{what}: {label} has video up to {last_end:.2f} s, the window "
                        f"asks {first:.2f}-{stop:.2f} s")
    stop = min(stop, last_end)
    duration = stop - first
    if duration < min_duration:
        raise ClipError("too_short", f"clip shorter than asked: {label} gives {duration:.2f} s "
                        f"of video, at least {min_duration:.2f} s required")
    count = int(math.floor(duration * fps + 1e-6))
    num_samples = int(round(duration * sample_rate))
    if audio is None:
        waveform = np.zeros(num_samples, np.float32)
    else:
        waveform = _trim_audio(chunks, audio_start or 0.0, first, num_samples, sample_rate)
    return DecodedClip(frames=frames[:count], waveform=waveform, fps=float(fps),
                       sample_rate=sample_rate, has_audio=audio is not None,
                       duration=duration, start=first, end=stop)


def _trim_audio(chunks, audio_start, start, num_samples, sample_rate):
    """Aligns the resampled audio on the clip's start; audio missing at either end (streams
    rarely start and stop exactly with the video) is filled with silence."""
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = int(round((start - audio_start) * sample_rate))
    if offset < 0:
        samples = np.concatenate([np.zeros(-offset, np.float32), samples])
        offset = 0
    out = samples[offset:offset + num_samples]
    if len(out) < num_samples:
        out = np.concatenate([out, np.zeros(num_samples - len(out), np.float32)])
    return np.clip(out, -1.0, 1.0).astype(np.float32)


class _FramePicker:
    """Streams decoded frames and keeps, for each target time start + k / fps, the one whose
    timestamp is nearest; only kept frames are scaled and converted to RGB."""

    def __init__(self, start, end, fps, stream, short_side):
        self.start, self.end, self.fps = start, end, fps
        rate = stream.average_rate or stream.guessed_rate or fps
        self.frame_period = 1.0 / float(rate)
        width, height = stream.codec_context.width, stream.codec_context.height
        self.size = _resized(width, height, short_side) or (width, height)
        # AREA averages when shrinking (no aliasing); BILINEAR is 2x cheaper when enlarging.
        self.interpolation = "AREA" if self.size[0] <= width else "BILINEAR"
        # Reused reformatters keep FFmpeg's scaler contexts (20x faster than a fresh one per
        # frame). Scaling in the decoder's own pixel format (planar YUV, where swscale has SIMD
        # paths) and then converting at the target size to RGB is 3x faster than swscale's
        # one-pass scale-to-rgb24; the two differ by under 2 levels on average (chroma edges).
        self.scaler, self.converter = VideoReformatter(), VideoReformatter()
        self.frames, self.previous, self.previous_rgb, self.count = [], None, None, 0
        self.last_time = None

    @property
    def done(self):
        return self.end is not None and self.last_time is not None and \
            self.last_time >= self.end + self.frame_period

    def _target(self):
        return self.start + len(self.frames) / self.fps

    def add(self, frame):
        time = frame.time if frame.time is not None else self.count * self.frame_period
        self.count += 1
        if self.previous is not None:
            midpoint = (self.previous[0] + time) / 2
            while self._target() < midpoint and not self._past_end():
                self._keep_previous()
        self.previous, self.previous_rgb = (time, frame), None
        self.last_time = time

    def _past_end(self):
        return self.end is not None and self._target() >= self.end - 1e-6

    def _keep_previous(self):
        if self.previous_rgb is None:
            scaled = self.scaler.reformat(self.previous[1], width=self.size[0],
                                          height=self.size[1], interpolation=self.interpolation)
            self.previous_rgb = self.converter.reformat(scaled, format="rgb24").to_ndarray()
        self.frames.append(self.previous_rgb)

    def finish(self):
        """Returns (frames, end time of the video content) after the last frame."""
        if self.previous is None:
            return np.zeros((0, 0, 0, 3), np.uint8), None
        # Millisecond rounding absorbs timestamp quantisation (2.99967 s for 72 frames at 24 fps).
        last_end = round(self.previous[0] + self.frame_period, 3)
        while self._target() < last_end - 1e-6 and not self._past_end():
            self._keep_previous()
        if not self.frames:
            return np.zeros((0, 0, 0, 3), np.uint8), None
        return np.stack(self.frames), last_end


def _resized(width, height, short_side):
    if not short_side:
        return None
    scale = short_side / min(width, height)
    return int(round(width * scale)), int(round(height * scale))
