"""`mbt make-demo-data`: synthetic audio-visual clips whose classes show what fusion is for.

Every clip shows a disc flashing on a noisy background and plays a sound; one label per clip.
Six classes in three groups (documented in docs/data_format.md):
- visual only: `visual_green` / `visual_yellow` (disc colour); the sound is noise drawn
  from one distribution for both.
- audio only: `audio_beeps` (4 Hz 1 kHz beeps) / `audio_sweep` (rising chirp); the disc is
  grey for both.
- relation: the disc is red or blue and the sound a steady high (2 kHz) or low (300 Hz)
  tone; `av_match` for (red, high) or (blue, low), `av_mismatch` otherwise. Either modality
  alone is at chance, and since match - mismatch would need g(colour) + h(tone) to be an
  XOR, averaging per-modality logits (late fusion) cannot separate them: only fusion inside
  the model can.
Clips follow ROUND: each round of eight holds every unimodal class once and each relation
class twice, once with a red and once with a blue disc, so that every round (and so every
split) holds all four (colour, tone) pairs of the XOR: drawn at random, a small demo's
training clips left some pairs rare, and the model learnt its clips instead of the rule.
Containers, codecs, sizes, frame rates and audio rates/layouts vary so the decoder earns its
keep, and the video is made to cost what real uploads cost to decode (720p-1080p, H.264 High
profile with CABAC, B-frames and deblocking as x264's `superfast` writes it, VP9, and a
background that pans like a camera), so that bench/preprocess.py's floor measures real
decoding. Content is a pure function of (seed, clip index).
"""
import csv
import os
import time

import av
import numpy as np

from mbt_keras.user_error import in_range, output_folder


CLASSES = ("visual_green", "visual_yellow", "audio_beeps", "audio_sweep", "av_match",
           "av_mismatch")
# The class groups (written into the class map's `group` column, which reports read) and
# what a model that solves each has shown.
GROUPS = {"visual only": (CLASSES[:2], "the frames alone decide it"),
          "audio only": (CLASSES[2:4], "the sound alone decides it"),
          "relation": (CLASSES[4:], "only fusion inside the model can do this")}
# One round of clips: the relation classes twice, one with each disc colour (`_cues`).
ROUND = CLASSES + CLASSES[4:]
DURATION_S = 2.0
EVAL_EVERY = 4  # every 4th round goes to eval
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 230), "green": (30, 200, 40),
           "yellow": (230, 220, 30), "grey": (128, 128, 128)}
# (container, video codec, audio codec, video options) cycled over clips.
FORMATS = (("mp4", "libx264", "aac", {"preset": "superfast"}),
           ("webm", "libvpx-vp9", "libopus", {"deadline": "realtime", "cpu-used": "8"}))
SIZES = ((960, 720), (1280, 720), (1920, 1080))
PAN_PER_FRAME = 0.004  # background shift per frame, as a fraction of the width
# Every clip's background is cut from one noise texture, of blocks 1/30 of the shorter side,
# at a random column: a background of its own would identify a clip, and a model could then
# fit the relation clips by remembering them instead of learning their rule.
TEXTURE_BLOCKS = (31, 160)   # rows, columns; a clip's (at most 31 x 75) overlaps many others'
FRAME_RATES = (24, 25, 30)
AAC_RATES = (22050, 44100, 48000)
LAYOUTS = ("mono", "stereo")


def add_arguments(parser):
    parser.add_argument("out", help="output folder (videos/, labels.csv, class_map.csv)")
    parser.add_argument("--clips", type=int, default=48, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="content seed")


def run(args) -> int:
    in_range(args.clips, "--clips", low=1)
    in_range(args.seed, "--seed", low=0)
    output_folder(args.out, "out")
    began = time.time()
    rows = make_demo_data(args.out, args.clips, args.seed)
    counts = {c: sum(r["labels"] == c for r in rows) for c in CLASSES}
    print(f"wrote {len(rows)} clips to {args.out} in {time.time() - began:.1f} s: {counts}")
    return 0


def make_demo_data(out: str, clips: int = 48, seed: int = 0):
    """Writes `clips` videos, labels.csv (generic format with a split column) and
    class_map.csv under `out`; returns the label rows."""
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    rows = []
    texture = np.random.default_rng(seed).integers(0, 50, (*TEXTURE_BLOCKS, 3), dtype=np.uint8)
    for index in range(clips):
        rng = np.random.default_rng([seed, index])
        label = ROUND[index % len(ROUND)]
        colour, audio_kind = _cues(label, ROUND[:index % len(ROUND)].count(label))
        container, vcodec, acodec, options = FORMATS[rng.integers(len(FORMATS))]
        path = f"videos/clip_{index:04d}.{container}"
        width, height = SIZES[rng.integers(len(SIZES))]
        fps = int(FRAME_RATES[rng.integers(len(FRAME_RATES))])
        rate = 48000 if acodec == "libopus" else int(AAC_RATES[rng.integers(len(AAC_RATES))])
        layout = LAYOUTS[rng.integers(len(LAYOUTS))]
        frames = _frames(rng, texture, colour, width, height, fps)
        audio = _audio(rng, audio_kind, rate)
        _write(os.path.join(out, path), (width, height), frames, fps, vcodec, options, audio,
               rate, acodec, layout)
        split = "eval" if (index // len(ROUND)) % EVAL_EVERY == EVAL_EVERY - 1 else "train"
        rows.append({"clip_id": f"clip_{index:04d}", "path": path, "labels": label,
                     "split": split})
    with open(os.path.join(out, "labels.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["clip_id", "path", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    from components.preprocess.label_files import write_class_map
    write_class_map({name: i for i, name in enumerate(CLASSES)},
                    os.path.join(out, "class_map.csv"),
                    groups={name: group for group, (names, _) in GROUPS.items() for name in names})
    return rows


def _cues(label, seen):
    """(disc colour, sound) of a label's clip; `seen`: earlier clips of the label in its
    round, so a relation class's two clips in a round take one disc colour each."""
    if label.startswith("visual_"):
        return label.split("_")[1], "noise"
    if label.startswith("audio_"):
        return "grey", label.split("_")[1]
    colour = ("red", "blue")[seen % 2]
    high = (label == "av_match") == (colour == "red")
    return colour, "high" if high else "low"


def _frames(rng, texture, colour, width, height, fps):
    count = int(DURATION_S * fps)
    radius = min(width, height) * rng.uniform(0.25, 0.35)
    cx = width * rng.uniform(0.35, 0.65)
    cy = height * rng.uniform(0.35, 0.65)
    # The disc's bounding box and its mask inside it (drawing whole-frame masks dominated).
    rows = slice(max(0, int(cy - radius)), min(height, int(cy + radius) + 2))
    cols = slice(max(0, int(cx - radius)), min(width, int(cx + radius) + 2))
    yy, xx = np.mgrid[rows, cols]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2
    flash_hz, phase = rng.uniform(1.5, 3.0), rng.uniform(0, 1)
    # Blocky noise (blocks 1/30 of the shorter side, so every size looks alike after resizing),
    # cut from the shared texture: a background that still compresses well; it pans to the
    # left like a camera.
    block = min(width, height) // 30
    pan = max(1, int(round(width * PAN_PER_FRAME)))
    wide = width + pan * count
    grid_rows, grid_cols = height // block + 1, wide // block + 1
    column = rng.integers(texture.shape[1] - grid_cols + 1)
    blocks = texture[:grid_rows, column:column + grid_cols]
    background = blocks.repeat(block, axis=0).repeat(block, axis=1)[:height, :wide]

    def frames():  # one at a time: 3 s of 1080p would be 0.5 GB at once
        for k in range(count):
            lit = ((k / fps) * flash_hz + phase) % 1.0 < 0.7
            frame = np.ascontiguousarray(background[:, k * pan:k * pan + width])
            frame[rows, cols][disc] = np.array(COLOURS[colour]) * (3 if lit else 1) // 3
            yield frame
    return frames()


def _audio(rng, kind, rate):
    t = np.arange(int(DURATION_S * rate)) / rate
    if kind == "noise":
        wave = rng.uniform(0.05, 0.2) * rng.standard_normal(t.shape)
    elif kind == "beeps":
        wave = 0.5 * np.sin(2 * np.pi * 1000 * t) * (((t * 4) % 1.0) < 0.5)
    elif kind == "sweep":
        period = t % 1.0
        wave = 0.5 * np.sin(2 * np.pi * (300 * period + 1350 * period ** 2))
    else:
        wave = 0.5 * np.sin(2 * np.pi * (2000 if kind == "high" else 300) * t)
    wave = wave + 0.01 * rng.standard_normal(t.shape)
    return np.clip(wave, -1, 1).astype(np.float32)


def _write(path, size, frames, fps, vcodec, options, audio, rate, acodec, layout):
    with av.open(path, "w") as container:
        video = container.add_stream(vcodec, rate=fps, options=options)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream(acodec, rate=rate, layout=layout)
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        channels = 1 if layout == "mono" else 2
        planar = np.ascontiguousarray(np.repeat(audio[None], channels, axis=0))
        chunk = 1024
        for begin in range(0, planar.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(planar[:, begin:begin + chunk], format="fltp",
                                               layout=layout)
            frame.sample_rate = rate
            frame.pts = begin
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
