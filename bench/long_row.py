"""Memory and time of one long row: a film labelled as a whole (no start/end), as `mbt
preprocess` turns it into records with the default 60 s segments and with `--segment-seconds
0` (one record, streamed), against a bare PyAV decode of the same file in the same run.

The film is generated: `--minutes` (default 10) of 456x256 H.264 at 25 fps with AAC audio,
a textured scene panning across the frame, so that its JPEGs weigh what real footage's do at
the 256 short side (about 30 KB a frame). Each job runs in a process of its own after a warm-up
job on a 3 s clip (tests/components/peak_memory.py); the figure is its peak resident memory
above the warm-up's, next to what the row's raw frames would take held once.

    python bench/long_row.py [--minutes 10]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import av
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from tests.components.conftest import write_clip  # noqa: E402  pylint: disable=C0413

WIDTH, HEIGHT, FPS = 456, 256, 25


def _texture(rng) -> np.ndarray:
    """Twice the frame's width of smooth colour fields (random colours every 16 pixels,
    interpolated) with fine grain: JPEG q90 frames of about 30 KB, like real footage's."""
    coarse = rng.integers(0, 256, (HEIGHT // 16 + 2, 2 * WIDTH // 16 + 2, 3)).astype(np.float32)
    y, x = np.linspace(0, coarse.shape[0] - 1.001, HEIGHT), np.linspace(
        0, coarse.shape[1] - 1.001, 2 * WIDTH)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    smooth = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
              + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
    return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


def write_film(path: str, seconds: float) -> str:
    """A panning textured scene with a tone: JPEG sizes like real footage's."""
    texture = _texture(np.random.default_rng(0))
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for k in range(int(seconds * FPS)):
            shift = (2 * k) % WIDTH
            image = np.ascontiguousarray(texture[:, shift:shift + WIDTH])
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        t = np.arange(int(seconds * 16000)) / 16000
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(
            np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def bare_decode_seconds(path: str) -> float:
    began = time.perf_counter()
    with av.open(path) as container:
        for _ in container.decode(*container.streams):
            pass
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as root:
        write_film(os.path.join(root, "film.mp4"), seconds)
        write_clip(os.path.join(root, "short.mp4"), 3.0, fps=10, rate=16000, layout="mono")
        for name, clip in (("film", "film.mp4"), ("short", "short.mp4")):
            with open(os.path.join(root, f"{name}.csv"), "w") as f:
                f.write(f"clip_id,path,labels,split\n{name},{clip},film,train\n")
        floor = bare_decode_seconds(os.path.join(root, "film.mp4"))
        raw = seconds * FPS * WIDTH * HEIGHT * 3
        print(f"{args.minutes:g} min film, {WIDTH}x{HEIGHT} at {FPS} fps: raw frames "
              f"{raw / 2**30:.2f} GiB; bare PyAV decode {floor:.1f} s")
        job = ["preprocess", "--videos", root, "--splits", "train:1", "--quiet",
               "--workers", "1", "--overwrite"]
        for label, extra in (("--segment-seconds 60 (default)", []),
                             ("--segment-seconds 0 (one record)", ["--segment-seconds", "0"])):
            peaks = os.path.join(root, "peaks.json")
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tests.components.peak_memory", peaks,
                            *job, "--labels", os.path.join(root, "short.csv"), "--out",
                            os.path.join(root, "warm"), "---", *job, "--labels",
                            os.path.join(root, "film.csv"), "--out",
                            os.path.join(root, "out"), *extra],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            wall = time.perf_counter() - began
            warm, film = (p["maxrss"] for p in json.load(open(peaks)))
            shards = os.path.join(root, "out", "Split-train")
            size = sum(os.path.getsize(os.path.join(shards, n)) for n in os.listdir(shards))
            counts = json.load(open(os.path.join(root, "out", "DeadLetters",
                                                 "counts-train.json")))
            print(f"{label}: peak {(film - warm) / 2**20:.0f} MiB above the warm-up "
                  f"({(film - warm) / raw:.3f} of the raw frames; process peak "
                  f"{film / 2**30:.2f} GiB), records {size / 2**20:.0f} MiB in "
                  f"{counts['written']} of {counts['read']} items; wall {wall:.0f} s with "
                  f"start-up and warm-up = {wall / floor:.1f}x the bare decode")


if __name__ == "__main__":
    main()
