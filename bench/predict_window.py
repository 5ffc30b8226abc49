"""Windowed prediction and the timeline on a long real 720p film, against baselines measured
in the same run:
- `mbt predict --start T` of a window near the end of the film vs the same window cut into
  its own short file: time ratio of the medians of 5 (target <= 1.5) and peak memory
  (target <= 1.5 GB), each in its own process (peak_mb), after start-up (imports and model
  load are the same for both and are reported apart);
- `mbt predict --timeline` on the SavedModel path vs a bare PyAV decode of every packet of
  the same file: throughput ratio in seconds of video per second (target >= 0.5).
The film is tests/data/bigbuckbunny_5s.mp4 (1280x720 H.264, 5.1 AAC) repeated by copying
its packets with shifted timestamps, in a temporary folder; the model is an untrained
mbt-tiny export (speed does not depend on the weights).

    .venv/bin/python bench/predict_window.py [--minutes 3]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

import av  # noqa: E402

CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")
PRESET = "mbt-tiny"
REPEATS = 5  # window predictions per process; the median is reported (the machine is shared)


def build_film(path: str, minutes: float) -> float:
    """Copies CLIP's packets end to end until `minutes` are reached; returns the seconds."""
    with av.open(CLIP) as source:
        length = source.duration / av.time_base
        packets = [(p.stream.index, p.pts, p.dts, p.duration, p.is_keyframe, bytes(p),
                    p.time_base) for p in source.demux() if p.dts is not None]
        copies = int(minutes * 60 / length) + 1
        with av.open(path, "w") as film:
            streams = {s.index: film.add_stream_from_template(s) for s in source.streams}
            for copy in range(copies):
                for index, pts, dts, duration, key, data, time_base in packets:
                    shift = int(round(copy * length / time_base))
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + shift, dts + shift
                    packet.duration, packet.is_keyframe = duration, key
                    packet.time_base, packet.stream = time_base, streams[index]
                    film.mux(packet)
    return copies * length


def cut(film: str, path: str, start: float, seconds: float):
    """The window [start - 0.5, start + seconds + 0.5) re-encoded as its own 720p file."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from components.preprocess.clip_decoder import (  # pylint: disable=import-outside-toplevel
        decode_clip)
    clip = decode_clip(film, start=start - 0.5, end=start + seconds + 0.5, short_side=None)
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "veryfast"})
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono")
        for frame in clip.frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(clip.waveform[np.newaxis], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))


def child(task: dict):
    """One measurement in this (fresh) process; prints JSON with seconds and peak memory."""
    began = time.perf_counter()
    result = {}
    if task["kind"] == "bare":
        with av.open(task["video"]) as container:
            container.streams.video[0].thread_type = "AUTO"
            for packet in container.demux():
                packet.decode()
    else:
        from mbt_keras import contract  # pylint: disable=import-outside-toplevel
        from serving import client, timeline  # pylint: disable=import-outside-toplevel
        predict = client.load_saved_model(task["model"])
        window = dict(num_frames=task["num_frames"], seconds=task["seconds"])
        predict(client.read_window(task["warmup"], **window).inputs)  # trace and warm up
        result["startup_s"] = time.perf_counter() - began
        began = time.perf_counter()
        if task["kind"] == "window":
            times = []
            for _ in range(REPEATS):
                began = time.perf_counter()
                scores = predict(client.read_window(task["video"], start=task["start"],
                                                    **window).inputs)
                times.append(time.perf_counter() - began)
            result["top"] = scores[contract.OUT_TOP_K_SCORES][0].tolist()
            result["seconds"] = sorted(times)[REPEATS // 2]
        else:
            rows = list(timeline.classify(timeline.windows(task["video"], **window),
                                          predict, batch_size=8))
            result["windows"] = len(rows)
            result["seconds"] = time.perf_counter() - began
    if task["kind"] == "bare":
        result["seconds"] = time.perf_counter() - began
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))


def peak_mb() -> float:
    """This process's peak resident memory: VmHWM where Linux has it, since getrusage's
    ru_maxrss keeps the parent's peak across fork + exec (this bench's parent holds
    TensorFlow and a model); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(task: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], check=True,
                         capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    import keras  # pylint: disable=import-outside-toplevel

    from mbt_keras import contract  # pylint: disable=import-outside-toplevel
    from mbt_keras.config import from_preset  # pylint: disable=import-outside-toplevel
    from mbt_keras.export import export_saved_model  # pylint: disable=import-outside-toplevel
    from mbt_keras.model import build_model  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        film = os.path.join(tmp, "film.mp4")
        length = build_film(film, args.minutes)
        print(f"film: {length:.0f} s of 1280x720 H.264 + 5.1 AAC, "
              f"{os.path.getsize(film) / 1e6:.0f} MB "
              f"(built in {time.perf_counter() - began:.0f} s)")
        config = from_preset(PRESET)
        keras.utils.set_random_seed(0)
        model = export_saved_model(build_model(config), config,
                                   [f"class_{i}" for i in range(sum(config.num_classes))],
                                   os.path.join(tmp, "model"))
        seconds = config.spec_frames / contract.SPEC_FRAMES_PER_SECOND
        start = length - 10.0
        short = os.path.join(tmp, "window.mp4")
        cut(film, short, start, seconds)
        common = dict(model=model, num_frames=config.num_frames, seconds=seconds, warmup=CLIP)
        near_end = measure(dict(common, kind="window", video=film, start=start))
        alone = measure(dict(common, kind="window", video=short, start=0.5))
        print(f"mbt predict of a {seconds} s window at {start:.0f} s of the film: "
              f"{near_end['seconds'] * 1e3:.0f} ms, peak {near_end['peak_mb']:.0f} MB "
              f"(start-up {near_end['startup_s']:.1f} s)")
        print(f"the same window as its own file:            {alone['seconds'] * 1e3:.0f} ms, "
              f"peak {alone['peak_mb']:.0f} MB")
        print(f"  time ratio {near_end['seconds'] / alone['seconds']:.2f} (target <= 1.5), "
              f"peak {near_end['peak_mb'] / 1024:.2f} GB (target <= 1.5)")
        bare = measure(dict(kind="bare", video=film))
        line = measure(dict(common, kind="timeline", video=film))
        bare_speed, line_speed = length / bare["seconds"], length / line["seconds"]
        print(f"bare PyAV decode of the film:  {bare['seconds']:.1f} s, {bare_speed:.1f} s of "
              f"video/s, peak {bare['peak_mb']:.0f} MB")
        print(f"timeline (SavedModel, {line['windows']} windows of {seconds} s, batches of 8): "
              f"{line['seconds']:.1f} s, {line_speed:.1f} s of video/s, peak "
              f"{line['peak_mb']:.0f} MB")
        print(f"  throughput ratio {line_speed / bare_speed:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
