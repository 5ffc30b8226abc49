"""Decode one clip with PyAV into the paper's inputs (4.2): RGB frames at a fixed fps and
16 kHz mono audio, trimmed to [start, end).

The project's one decoder: the Beam job, `mbt predict`, the timeline and batch inference all
read video through it, so a clip is decoded the same way for training and for inference.
- Windowed: `decode_clip(start=, end=)` seeks to the keyframe before `start` and stops after
  `end`, so its work and memory depend on the window, not on the file's length.
- Streaming: `decode_chunks` reads a whole file (or a window) once, front to back, as
  consecutive clips, holding one chunk at a time: the Beam job builds a record of any length
  from one second of frames at a time, the timeline classifies a film as it decodes.
- Tolerant: a packet that does not decode (FFmpeg reports damaged data; real AVI files often
  start with an audio packet that does not) is skipped and counted in `skipped_packets`;
  the clip is rejected as `corrupt` only when more than max(1, max_damaged_fraction x the
  packets read) are skipped (a skipped audio packet leaves silence in its place).
Bad input raises `ClipError` whose `kind` names the failure (the Beam job turns it into a
dead-letter record and a counter). A failure to read the bytes (an OSError or tf.errors from
the file object, which PyAV re-raises as it was) is not the clip's and propagates
(components/preprocess/retryable.py).
"""
import contextlib
import dataclasses
import math
import os
from typing import BinaryIO, Iterator, Optional, Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mbt_keras.compat import AV_OPEN_OPTIONS
from mbt_keras.user_error import UserError
from mbt_keras.windows import frames_of

MISSING_AUDIO_POLICIES = ("reject", "silence")
# Labelled segments often end a few frames after the last decoded frame (AudioSet's 10 s
# windows on 9.98 s downloads); smaller overshoots are clamped, not rejected.
END_TOLERANCE_S = 0.1
# A video stream that stops this much before its declared length was cut short.
TRUNCATION_TOLERANCE_S = 0.5
# Default share of a clip's packets that may fail to decode before it is `corrupt`: a few
# damaged packets in a minute of video (about 4000 packets) pass, a file of garbage does not.
MAX_DAMAGED_FRACTION = 0.02
# Decoding starts at the keyframe before start - PREROLL_S: audio decoders (AAC, AC3) and the
# resampler need a frame or two of history before their output is exact.
PREROLL_S = 0.25
# Containers interleave audio within a second or so of the video; in a pass over the whole
# file, audio still missing this far behind the video has ended (a soundtrack shorter than
# the film), so reading stops. Audio that has not begun at all may be stored behind the video
# (a muxer that did not interleave): the pass reads up to AUDIO_LEAD_S of video ahead for it.
# A window reads on to the file's end for its audio, demuxing only (no video decode).
INTERLEAVE_S = 5.0
AUDIO_LEAD_S = 60.0
# Leading bytes of the containers FFmpeg reads for video: an unreadable file that starts
# like one of these is a damaged video, anything else is not a video at all.
_CONTAINER_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"OggS"),
                    (0, b"FLV"), (0, b"\x00\x00\x01\xba"), (0, b"\x47"), (4, b"moov"),
                    (4, b"mdat"), (4, b"free"), (4, b"wide"))

Source = Union[str, BinaryIO]


class ClipError(UserError):
    """A clip that cannot become a training example (or be classified); `kind` is a short
    counter name."""

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
    skipped_packets: int = 0  # packets that did not decode (tolerated damage)
    packets_read: int = 0     # packets demuxed to decode this clip (its decoding work)


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    duration: Optional[float]   # seconds of video the header declares, None if it does not
    has_audio: bool


def probe(source: Source, name: Optional[str] = None) -> SourceInfo:
    """What the container header says, without decoding (to place a window in a clip)."""
    with OpenedClip(source, name) as clip:
        return clip.info()


def decode_clip(source: Source, *, name: Optional[str] = None, **options) -> DecodedClip:
    """Decodes [start, end) of `source` (a path or a binary file object, e.g. read through
    tf.io.gfile); the whole file when both are None. `options`: `OpenedClip.decode`'s."""
    with OpenedClip(source, name) as clip:
        return clip.decode(**options)


class OpenedClip:
    """A source opened once for both its header (`info`, as `probe`) and one `decode` (as
    `decode_clip`): a window placed from the clip's length is decoded without opening the
    file a second time. The file opens on first use; the `with` block closes it."""

    def __init__(self, source: Source, name: Optional[str] = None):
        self.source, self.label = source, _label(source, name)
        self._closing, self._container = contextlib.ExitStack(), None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._closing.close()

    def _opened(self):
        if self._container is None:
            self._container = self._closing.enter_context(_opened(self.source, self.label))
        return self._container

    def info(self) -> SourceInfo:
        container = self._opened()
        video = _video_stream(container, self.label)
        known = [container.duration / av.time_base if container.duration else None,
                 float(video.duration * video.time_base) if video.duration else None]
        known = [d for d in known if d]
        return SourceInfo(duration=min(known) if known else None,
                          has_audio=bool(container.streams.audio))

    def decode(self, **options) -> DecodedClip:
        """Decodes [start, end) of the source; the whole file when both are None: the one
        chunk of `decode_chunks` without `chunk_seconds` (its options)."""
        (clip,) = self.decode_chunks(**options)
        return clip

    def decode_chunks(self, *, chunk_seconds: Optional[float] = None, fps: float = 25,
                      short_side: Optional[int] = 256, sample_rate: int = 16000,
                      start: Optional[float] = None, end: Optional[float] = None,
                      missing_audio: str = "reject", min_duration: float = 0.0,
                      decoder_threads: int = 0,
                      max_damaged_fraction: float = MAX_DAMAGED_FRACTION
                      ) -> Iterator[DecodedClip]:
        """[start, end) of the source (the whole file when both are None) in one pass, as
        consecutive clips of round(chunk_seconds * fps) frames (the last one shorter; one
        clip without `chunk_seconds`) and their audio. Memory holds one chunk, whatever the
        window's length; concatenated, the chunks are the one-clip decode,
        frame for frame and sample for sample. Checks that need the window's end (too short,
        truncated) raise after the chunks before it were yielded; damage is checked at
        every chunk.

        Frames are picked by timestamp (the decoded frame nearest to start + k / fps), so any
        source frame rate maps to `fps`; the shorter side is resized to `short_side` (None
        keeps the size). Audio of any rate and layout is resampled by FFmpeg to mono
        `sample_rate`. `missing_audio`: 'reject' (default) raises for a file without an
        audio stream, 'silence' keeps it with zeros and has_audio=False. `min_duration`
        rejects clips shorter than that. `decoder_threads`: 0 lets FFmpeg decode one clip
        on every core (frame + slice threads, best for one clip at a time, e.g. serving); 1
        decodes in the calling thread, which is cheaper in total when a job decodes several
        clips in parallel (docs/benchmarks.md). `max_damaged_fraction`: share of packets
        that may fail to decode (module docstring).
        """
        label = self.label
        if start is not None and start < 0 or end is not None and end <= (start or 0.0):
            raise ClipError("out_of_range", f"invalid window start={start} end={end} for "
                            f"{label}: need 0 <= start < end")
        first = start or 0.0
        container = self._opened()
        declared = container.duration / av.time_base if container.duration else None
        if declared is not None and first >= declared:
            raise ClipError("out_of_range", f"start {first:.2f} s is outside {label} "
                            f"(0-{declared:.2f} s)")
        if declared is not None and end is not None and end > declared + END_TOLERANCE_S:
            raise ClipError("too_short", f"clip shorter than asked: {label} ends at "
                            f"{declared:.2f} s, the window asks {first:.2f}-{end:.2f} s")
        stream = _Stream(container, label, fps=fps, short_side=short_side,
                         sample_rate=sample_rate, start=first, end=end,
                         missing_audio=missing_audio, decoder_threads=decoder_threads,
                         max_damaged_fraction=max_damaged_fraction)
        step = max(1, int(round(chunk_seconds * fps))) if chunk_seconds else None
        index, limit = 0, end if end is not None else math.inf
        while True:
            stop = first + (index + step) / fps if step else math.inf
            final = stop >= limit - 1e-6
            stream.read_until(min(stop, limit), final=final)
            if not final and stream.exhausted:
                final = stop >= stream.last_end() - 1e-6
            if not final:
                yield stream.take(stop)
                index += step
                continue
            last_end = stream.last_end()
            stop = end if end is not None else last_end
            if stop > last_end + END_TOLERANCE_S:
                kind = ("corrupt" if declared and last_end < declared - END_TOLERANCE_S
                        else "too_short")
                what = "truncated video file" if kind == "corrupt" else "clip shorter than asked"
                raise ClipError(kind, f"{what}: {label} has video up to {last_end:.2f} s, the "
                                f"window asks {first:.2f}-{stop:.2f} s")
            stop = min(stop, last_end)
            if stop - first < min_duration:
                raise ClipError("too_short", f"clip shorter than asked: {label} gives "
                                f"{stop - first:.2f} s of video, at least {min_duration:.2f} s "
                                "required")
            if not index or first + index / fps < stop - 1e-6:
                yield stream.take(stop)
            return


def decode_chunks(source: Source, *, chunk_seconds: float = 1.0, name: Optional[str] = None,
                  **options) -> Iterator[DecodedClip]:
    """The whole of `source` (or [start, end) of it) in one pass, as consecutive clips of
    round(chunk_seconds * fps) frames: `OpenedClip.decode_chunks` (its options). Chunk k
    starts at frame k * round(chunk_seconds * fps) and sample round(start * sample_rate) of
    the source, so concatenated chunks are `decode_clip` of the whole file."""
    with OpenedClip(source, name) as clip:
        yield from clip.decode_chunks(chunk_seconds=chunk_seconds, **options)


def _label(source, name):
    return name or (source if isinstance(source, str) else getattr(source, "name", "<stream>"))


@contextlib.contextmanager
def _opened(source, label):
    if isinstance(source, str) and not os.path.exists(source):
        raise ClipError("missing_file", f"missing file: {label} does not exist")
    if hasattr(source, "seek"):  # a file object read before (by `probe`, say) starts over
        source.seek(0)
    try:
        container = av.open(source, **AV_OPEN_OPTIONS)
    except av.error.FFmpegError as error:  # the file's; the storage's propagate (retryable.py)
        raise _unreadable(source, label, error) from None
    with container:
        yield container


def _video_stream(container, label):
    """The container's main video stream, as players choose it (FFmpeg's best stream: the
    default one with frames, not a cover picture or a thumbnail track stored before it); a
    file without one, or with only a cover picture (music with album art), is `not_a_video`."""
    if not container.streams.video:
        raise ClipError("not_a_video", f"not a video file: {label} has no video stream")
    video = container.streams.best("video")
    if video.disposition & (av.stream.Disposition.attached_pic
                            | av.stream.Disposition.timed_thumbnails):
        raise ClipError("not_a_video", f"not a video file: {label} holds only a still "
                        "picture (cover art), no video stream")
    return video


def _audio_stream(container):
    """The audio players play: FFmpeg's best stream (the default track of several), or None."""
    return container.streams.best("audio") if container.streams.audio else None


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


class _Stream:
    """One demux-and-decode pass from `start`: frames picked at `fps`, audio resampled, bad
    packets skipped and counted. `read_until(t)` decodes until everything before t is
    known; `take(t)` hands it over and forgets it, so memory holds only what is not taken."""

    def __init__(self, container, label, *, fps, short_side, sample_rate, start, end,
                 missing_audio, decoder_threads, max_damaged_fraction):
        if missing_audio not in MISSING_AUDIO_POLICIES:
            raise ValueError(f"missing_audio={missing_audio!r}: expected one of "
                             f"{MISSING_AUDIO_POLICIES}")
        video = _video_stream(container, label)
        audio = _audio_stream(container)
        if audio is None and missing_audio == "reject":
            raise ClipError("no_audio", f"no audio stream in {label} (missing_audio='reject'; "
                            "'silence' keeps it with silent audio and has_audio=0)")
        if decoder_threads != 1:
            video.thread_type = "AUTO"
        video.thread_count = decoder_threads
        if start > PREROLL_S and video.time_base:
            container.seek(int((start - PREROLL_S) / video.time_base), stream=video,
                           backward=True)
        self.label, self.fps, self.sample_rate = label, fps, sample_rate
        self.start, self.max_damaged_fraction = start, max_damaged_fraction
        self.video_declared = _declared_video_seconds(video)
        self.picker = _FramePicker(start, end, fps, video, short_side)
        self.audio = _AudioTrack(sample_rate) if audio is not None else None
        self.packets = container.demux([video] + ([audio] if audio is not None else []))
        self.exhausted, self.packets_read, self.skipped = False, 0, 0
        self.audio_read = False  # the audio stream is read to the end of the file
        self.video_at_audio = start  # video time read when the last audio frame came
        self.reported = (0, 0)  # (packets_read, skipped) when the last clip was taken

    def read_until(self, time: float, final: bool = True):
        """Decode until every frame and sample before `time` is known (see INTERLEAVE_S);
        `final`: `time` is the window's end, after which no more frames are needed."""
        while not self.exhausted and not self.picker.covers(time):
            self._read(video=True)
        if self.audio is None:
            return
        if self.picker.end is None or not final:  # later frames are needed: a pass
            lead = INTERLEAVE_S if self.audio.first is not None else AUDIO_LEAD_S
            while not (self.exhausted or self.audio.covers(time) or
                       (self.picker.last_time or 0.0) - self.video_at_audio >= lead):
                self._read(video=True)
        else:  # a window with all its frames: its audio may still follow in the file
            while not (self.exhausted or self.audio_read or self.audio.covers(time)):
                self._read(video=False)

    def _read(self, *, video: bool):
        """Demux and decode the next packet (`video` False: skip video packets); at the end
        of the file, flush the decoders and mark what has been read to the end."""
        while True:
            try:
                packet = next(self.packets)
            except StopIteration:
                if video:
                    self.exhausted = True
                    self.picker.finish()
                self.audio_read = True
                if self.audio is not None:
                    self.audio.finish()
                return
            except av.error.FFmpegError as error:
                raise ClipError("corrupt", f"corrupt video file {self.label}: reading failed "
                                f"({error})") from None
            if video or packet.stream.type == "audio":
                self._decode(packet)
                return

    def _decode(self, packet):
        if packet.size:
            self.packets_read += 1
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            self.skipped += 1
            if packet.stream.type == "audio":
                self.audio.lost_packet()
            return
        for frame in frames:
            if packet.stream.type == "video":
                self.picker.add(frame)
            else:
                self.audio.add(frame)
                self.video_at_audio = self.picker.last_time or self.start

    def last_end(self) -> float:
        """End of the video content once the file is read to the end (or past the window)."""
        last_end = self.picker.last_end()
        if last_end is None:
            raise ClipError("corrupt", f"corrupt or truncated video file {self.label}: no video "
                            f"frame decoded at or after {self.start:.2f} s")
        if self.exhausted and self.video_declared and \
                last_end < self.video_declared - TRUNCATION_TOLERANCE_S:
            raise ClipError("corrupt", f"truncated video file {self.label}: video stops at "
                            f"{last_end:.2f} s, its header declares {self.video_declared:.2f} s")
        return last_end

    def take(self, stop: float) -> DecodedClip:
        """The clip from the end of the last one taken (or `start`) to `stop`."""
        first = self.start + self.picker.taken / self.fps
        if self.skipped > max(1, self.max_damaged_fraction * self.packets_read):
            raise ClipError("corrupt", f"corrupt video file {self.label}: {self.skipped} of "
                            f"{self.packets_read} packets did not decode (more than "
                            f"{self.max_damaged_fraction:.1%} damaged)")
        duration = stop - first
        frames = self.picker.take(frames_of(stop - self.start, self.fps) - self.picker.taken)
        begin = int(round(first * self.sample_rate))
        count = int(round(stop * self.sample_rate)) - begin
        waveform = (self.audio.take(begin, count) if self.audio is not None
                    else np.zeros(count, np.float32))
        read, skipped = self.reported
        self.reported = (self.packets_read, self.skipped)
        return DecodedClip(frames=frames, waveform=waveform, fps=float(self.fps),
                           sample_rate=self.sample_rate, has_audio=self.audio is not None,
                           duration=duration, start=first, end=stop,
                           skipped_packets=self.skipped - skipped,
                           packets_read=self.packets_read - read)


class _AudioTrack:
    """Resampled mono audio indexed by sample number from the source's time 0; a packet that
    did not decode becomes silence, so later audio stays in place."""

    def __init__(self, sample_rate):
        self.sample_rate = sample_rate
        self.resampler = self._resampler()
        self.chunks, self.first, self.size = [], None, 0  # first: sample index of chunks[0]
        self.frame_seconds = None

    def covers(self, time: float) -> bool:
        return self.first is not None and self.first + self.size >= time * self.sample_rate

    def add(self, frame):
        if self.first is None:
            self.first = int(round((frame.time or 0.0) * self.sample_rate))
        self.frame_seconds = frame.samples / frame.sample_rate
        for out in self.resampler.resample(frame):
            self._append(out.to_ndarray().reshape(-1))

    def lost_packet(self):
        """A packet that did not decode: silence as long as the frame before it (audio codecs
        have fixed frame sizes; container timestamps of audio, AVI's above all, are too coarse
        to measure the gap)."""
        if self.frame_seconds:
            self.finish()
            self.resampler = self._resampler()
            self._append(np.zeros(int(round(self.frame_seconds * self.sample_rate)),
                                  np.float32))

    def _resampler(self):
        return av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)

    def finish(self):
        for out in self.resampler.resample(None):
            self._append(out.to_ndarray().reshape(-1))

    def _append(self, samples):
        self.chunks.append(samples)
        self.size += len(samples)

    def take(self, begin: int, count: int) -> np.ndarray:
        """Samples [begin, begin + count), silence where the stream has none; forgets all
        before begin + count."""
        first = self.first if self.first is not None else begin
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        offset = begin - first
        if offset < 0:
            samples, offset = np.concatenate([np.zeros(-offset, np.float32), samples]), 0
            first = begin
        out = samples[offset:offset + count]
        if len(out) < count:
            out = np.concatenate([out, np.zeros(count - len(out), np.float32)])
        rest = samples[offset + count:]
        self.chunks, self.size = [rest], len(rest)
        self.first = first + offset + count if self.first is not None else None
        return np.clip(out, -1.0, 1.0).astype(np.float32)


class _FramePicker:
    """Streams decoded frames and keeps, for each target time start + k / fps, the one whose
    timestamp is nearest; only kept frames are scaled (to square pixels) and converted to RGB,
    and turned upright as a player shows them: a phone's portrait video is stored landscape with a display
    matrix (rotation) that FFmpeg's decoder reports on each frame but does not apply."""

    def __init__(self, start, end, fps, stream, short_side):
        self.start, self.end, self.fps = start, end, fps
        rate = stream.average_rate or stream.guessed_rate or fps
        self.frame_period = 1.0 / float(rate)
        width, height = stream.codec_context.width, stream.codec_context.height
        # Non-square pixels (anamorphic DVD, DV, some broadcast files) are shown, and so
        # kept, at the display's width.
        pixel = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        shown = max(1, int(round(width * pixel))) if pixel and pixel > 0 else width
        self.size = _resized(shown, height, short_side) or (shown, height)
        # AREA averages when shrinking (no aliasing); BILINEAR is 2x cheaper when enlarging.
        self.interpolation = "AREA" if self.size[0] <= width else "BILINEAR"
        # Reused reformatters keep FFmpeg's scaler contexts (20x faster than a fresh one per
        # frame). Scaling in the decoder's own pixel format (planar YUV, where swscale has SIMD
        # paths) and then converting at the target size to RGB is 3x faster than swscale's
        # one-pass scale-to-rgb24; the two differ by under 2 levels on average (chroma edges).
        self.scaler, self.converter = VideoReformatter(), VideoReformatter()
        self.frames, self.previous, self.previous_rgb, self.count = [], None, None, 0
        self.kept, self.taken, self.last_time, self.finished = 0, 0, None, False
        self.turns = None  # counterclockwise quarter turns to show a frame upright

    def covers(self, time):
        """Whether every frame with a target time before `time` is known."""
        return self.last_time is not None and self.last_time >= time + self.frame_period

    def _target(self):
        return self.start + self.kept / self.fps

    def add(self, frame):
        if self.turns is None:  # the stream's display matrix, carried by every frame
            angle = frame.rotation or 0  # NaN for a singular matrix: shown as stored
            self.turns = int(round(angle / 90.0)) % 4 if math.isfinite(angle) else 0
            if self.turns % 2:
                self.size = self.size[::-1]
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
            width, height = self.size[::-1] if self.turns % 2 else self.size
            scaled = self.scaler.reformat(self.previous[1], width=width, height=height,
                                          interpolation=self.interpolation)
            rgb = self.converter.reformat(scaled, format="rgb24").to_ndarray()
            # rotation: the angle the display turns the stored frame counterclockwise.
            self.previous_rgb = np.ascontiguousarray(np.rot90(rgb, self.turns)) \
                if self.turns else rgb
        self.frames.append(self.previous_rgb)
        self.kept += 1

    def last_end(self):
        """End time of the video content seen so far (after `finish`: of the whole stream);
        None when no frame was kept."""
        if self.previous is None or not self.kept:
            return None
        return self._content_end()

    def _content_end(self):
        """End of the last frame seen. Millisecond rounding absorbs timestamp quantisation
        (2.99967 s for 72 frames at 24 fps)."""
        return round(self.previous[0] + self.frame_period, 3)

    def finish(self):
        """Keeps the targets up to the end of the last frame, once the stream has ended."""
        if self.previous is None or self.finished:
            return
        self.finished = True
        last_end = self._content_end()
        while self._target() < last_end - 1e-6 and not self._past_end():
            self._keep_previous()

    def take(self, count):
        """The next `count` kept frames (fewer if fewer are kept), uint8 [N, H, W, 3]."""
        out, self.frames = self.frames[:max(0, count)], self.frames[max(0, count):]
        self.taken += len(out)
        if not out:
            return np.zeros((0, self.size[1], self.size[0], 3), np.uint8)
        return np.stack(out)


def _declared_video_seconds(video) -> Optional[float]:
    """The longest video length the header declares: its duration, or its frame count (AVI
    keeps the frame count in its header, while FFmpeg measures a cut file's duration from
    the data that is left)."""
    known = [float(video.duration * video.time_base) if video.duration else 0.0,
             video.frames / float(video.average_rate) if video.frames and video.average_rate
             else 0.0]
    return max(known) or None


def _resized(width, height, short_side):
    if not short_side:
        return None
    scale = short_side / min(width, height)
    return int(round(width * scale)), int(round(height * scale))
