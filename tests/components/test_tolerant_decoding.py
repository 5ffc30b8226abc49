"""Damaged packets in real files: isolated ones are skipped and counted, widespread damage,
a file cut in half or overwritten with garbage is still `corrupt`."""
import numpy as np
import pytest

from components.preprocess.clip_decoder import ClipError, decode_clip
from components.preprocess.sequence_example import clip_to_sequence_example
from mbt_keras import contract
from tests.components.conftest import damage_packets, run_counting, write_clip

SECONDS = 8.0


@pytest.fixture(scope="module", params=[("mpeg4", "ac3", "avi"), ("libx264", "aac", "mp4")],
                ids=["avi-mpeg4-ac3", "mp4-h264-aac"])
def source(request, tmp_path_factory):
    video_codec, audio_codec, extension = request.param
    path = str(tmp_path_factory.mktemp("tolerant") / f"clean.{extension}")
    return write_clip(path, SECONDS, rate=48000, video_codec=video_codec,
                      audio_codec=audio_codec, gop=20)


def test_isolated_damaged_packets_are_skipped_counted_and_recorded(source, tmp_path):
    clean = decode_clip(source)
    damaged = damage_packets(source, str(tmp_path / ("mid." + source.rsplit(".", 1)[1])),
                             {("video", 25), ("video", 47), ("audio", 100)})
    clip = decode_clip(damaged)
    assert clip.skipped_packets == 3 and clean.skipped_packets == 0
    assert clip.frames.shape == clean.frames.shape and clip.waveform.shape == clean.waveform.shape
    if source.endswith(".mp4"):
        # The audio after the lost packet stays in place (silence fills the gap, no shift; a
        # third of a sample of phase where 1024 samples at 48 kHz do not divide into 16 kHz).
        # (AVI's AC3 parser merges a packet of garbage with its neighbour: one packet fails,
        # two frames are lost, the rest comes one AC3 frame (32 ms) early.)
        np.testing.assert_allclose(clip.waveform[-16000:], clean.waveform[-16000:], atol=0.05)
    example = clip_to_sequence_example(clip, clip_id="c", uri=damaged, labels=["a"],
                                       class_map={"a": 0})
    assert example.context.feature[contract.SKIPPED_PACKETS].int64_list.value == [3]


def test_an_undecodable_first_audio_packet_keeps_the_audio(source, tmp_path):
    damaged = damage_packets(source, str(tmp_path / ("first." + source.rsplit(".", 1)[1])),
                             {("audio", 0)})
    clip = decode_clip(damaged)
    assert clip.skipped_packets == 1 and clip.has_audio
    assert clip.waveform[16000:].std() > 0.1  # the 440 Hz tone after the lost packet


def test_widespread_damage_is_rejected_naming_the_count(source, tmp_path):
    every_fifth = {("video", n) for n in range(3, 80, 5)}
    damaged = damage_packets(source, str(tmp_path / ("bad." + source.rsplit(".", 1)[1])),
                             every_fifth)
    with pytest.raises(ClipError) as error:
        decode_clip(damaged)
    assert error.value.kind == "corrupt"
    assert f"{len(every_fifth)} of " in str(error.value) and "did not decode" in str(error.value)
    assert decode_clip(damaged, max_damaged_fraction=0.2).skipped_packets == len(every_fifth)


@pytest.mark.parametrize("how", ["cut_in_half", "garbage_inside"])
def test_a_file_cut_in_half_or_overwritten_with_garbage_is_corrupt(source, tmp_path, how):
    with open(source, "rb") as f:
        data = bytearray(f.read())
    if how == "cut_in_half":
        data = data[:len(data) // 2]
    else:
        # Keep the container's header and index; every media byte in between is random.
        start, stop = len(data) // 10, len(data) * 8 // 10
        data[start:stop] = np.random.default_rng(1).integers(0, 256, stop - start,
                                                             np.uint8).tobytes()
    broken = tmp_path / ("broken." + source.rsplit(".", 1)[1])
    broken.write_bytes(bytes(data))
    with pytest.raises(ClipError) as error:
        decode_clip(str(broken))
    assert error.value.kind == "corrupt"


def test_the_beam_job_keeps_a_lightly_damaged_clip_and_counts_its_skipped_packets(tmp_path):
    import apache_beam as beam
    import tensorflow as tf

    from components.preprocess.label_files import parse_label_file, write_class_map
    from components.preprocess.transform import EXAMPLES, ClipsToExamples
    clean = write_clip(str(tmp_path / "clean.mp4"), SECONDS, rate=48000, gop=20)
    light = damage_packets(clean, str(tmp_path / "light.mp4"), {("video", 25), ("audio", 9)})
    heavy = damage_packets(clean, str(tmp_path / "heavy.mp4"),
                           {("video", n) for n in range(3, 80, 4)})
    (tmp_path / "labels.csv").write_text(f"clip_id,path,labels\nlight,{light},dog\n"
                                         f"heavy,{heavy},dog\n")
    write_class_map({"dog": 0}, str(tmp_path / "class_map.csv"))
    records, class_map = parse_label_file(str(tmp_path / "labels.csv"), str(tmp_path),
                                          class_map_path=str(tmp_path / "class_map.csv"))
    pipeline = beam.Pipeline()
    outputs = pipeline | beam.Create(records) | ClipsToExamples(class_map, short_side=32)
    _ = outputs[EXAMPLES] | beam.Map(
        lambda e: tf.train.SequenceExample.FromString(e).context.feature[
            contract.SKIPPED_PACKETS].int64_list.value[0]
    ) | beam.Map(lambda n: _check_equal(n, 2))
    counters = run_counting(pipeline)
    assert counters["read"] == 2 and counters["written"] == 1
    assert counters["rejected_corrupt"] == 1 and counters["skipped_packets"] == 2


def _check_equal(value, expected):
    assert value == expected, f"record says {value} skipped packets, expected {expected}"
