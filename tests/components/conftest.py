"""Real media for the preprocessing tests: clips written with PyAV and real broken files."""
import os
import shutil

import av
import numpy as np
import pytest

BUNNY = os.path.join(os.path.dirname(__file__), "..", "data", "bigbuckbunny_5s.mp4")


def write_clip(path, seconds, *, fps=10, size=(64, 48), audio_hz=440.0, rate=44100,
               layout="stereo", with_audio=True, video_codec="libx264", audio_codec="aac",
               gop=None, waveform=None):
    """An H.264/AAC clip (or the codecs given) whose frame k has brightness 8 * k (so frames
    can be told apart) and whose audio is a sine at `audio_hz`, or the mono `waveform` at
    `rate` when given; a keyframe every `gop` frames when given."""
    width, height = size
    with av.open(path, "w") as container:
        options = {"preset": "ultrafast"} if video_codec == "libx264" else {}
        video = container.add_stream(video_codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if gop:
            video.codec_context.gop_size = gop
        sound = container.add_stream(audio_codec, rate=rate, layout=layout) if with_audio else None
        for k in range(int(seconds * fps)):
            image = np.full((height, width, 3), (8 * k) % 256, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            t = np.arange(int(seconds * rate)) / rate
            channels = 1 if layout == "mono" else 2
            mono = 0.5 * np.sin(2 * np.pi * audio_hz * t) if waveform is None else waveform
            wave = np.repeat(np.asarray(mono)[None], channels, 0)
            frame = av.AudioFrame.from_ndarray(wave.astype(np.float32), format="fltp",
                                               layout=layout)
            frame.sample_rate, frame.pts = rate, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def damage_packets(source, target, damaged):
    """Copies `source` packet by packet, replacing the payload of the (stream type, n)-th
    packets in `damaged` with random bytes of the same size (timestamps kept)."""
    rng = np.random.default_rng(0)
    with av.open(source) as reader, av.open(target, "w") as writer:
        streams = {s.index: writer.add_stream_from_template(s) for s in reader.streams}
        seen = {}
        for packet in reader.demux():
            if packet.dts is None:
                continue
            kind, out = packet.stream.type, streams[packet.stream.index]
            n = seen[kind] = seen.get(kind, -1) + 1
            if (kind, n) in damaged:
                garbage = av.Packet(rng.integers(0, 256, packet.size, np.uint8).tobytes())
                garbage.pts, garbage.dts = packet.pts, packet.dts
                garbage.time_base = packet.time_base
                garbage.is_keyframe = packet.is_keyframe
                packet = garbage
            packet.stream = out
            writer.mux(packet)
    return target


def run_counting(pipeline) -> dict:
    """Runs a Beam pipeline to the end; {name: value} of its jobs' counters
    (transform.METRICS_NAMESPACE: read, written, rejected_<kind>, skipped_packets)."""
    from apache_beam.metrics.metric import MetricsFilter

    from components.preprocess.transform import METRICS_NAMESPACE
    result = pipeline.run()
    result.wait_until_finish()
    return {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Good and broken inputs, named by what is wrong with them."""
    root = tmp_path_factory.mktemp("media")
    good = write_clip(str(root / "good.mp4"), 3.0)
    paths = {"good": good, "bunny": BUNNY,
             "short": write_clip(str(root / "short.mp4"), 0.5),
             "silent": write_clip(str(root / "silent.mp4"), 2.0, with_audio=False),
             "missing": str(root / "missing.mp4")}
    with open(good, "rb") as f:
        data = f.read()
    truncated = root / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    paths["truncated"] = str(truncated)
    text = root / "notes.mp4"
    text.write_text("these are meeting notes, not a video\n" * 20)
    paths["text"] = str(text)
    shutil.copy(good, root / "good_copy.mp4")
    paths["good_copy"] = str(root / "good_copy.mp4")
    return paths
