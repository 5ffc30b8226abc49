"""decode_clip on real encoded media: resampling, resizing, trimming and every bad input."""
import av
import numpy as np
import pytest

from components.preprocess import clip_decoder
from components.preprocess.clip_decoder import ClipError, OpenedClip, decode_chunks, decode_clip
from tests.components.conftest import write_clip


def test_bunny_51_channel_48k_is_downmixed_resampled_and_resized(media):
    clip = decode_clip(media["bunny"])
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (132, 256, 455, 3)
    assert clip.waveform.dtype == np.float32 and clip.waveform.shape == (84480,)
    assert clip.has_audio and clip.sample_rate == 16000 and clip.fps == 25
    assert clip.duration == pytest.approx(5.28) and clip.start == 0.0
    assert 0.005 < clip.waveform.std() < 0.5 and np.abs(clip.waveform).max() <= 1.0


def test_start_end_trim_frames_and_samples(media):
    clip = decode_clip(media["bunny"], start=2.0, end=4.0, short_side=64)
    assert clip.frames.shape == (50, 64, 114, 3)
    assert clip.waveform.shape == (32000,)
    assert (clip.start, clip.end, clip.duration) == (2.0, 4.0, 2.0)
    full = decode_clip(media["bunny"], short_side=64)
    np.testing.assert_array_equal(clip.frames[0], full.frames[50])
    np.testing.assert_allclose(clip.waveform[:16000], full.waveform[32000:48000], atol=1e-3)


def test_opened_clip_reads_header_and_window_in_one_open_as_probe_and_decode_clip(media,
                                                                               monkeypatch):
    opens = []
    real_open = clip_decoder.av.open
    monkeypatch.setattr(clip_decoder.av, "open", lambda *a, **k: opens.append(a) or
                        real_open(*a, **k))
    with OpenedClip(media["bunny"]) as opened:
        info = opened.info()
        clip = opened.decode(start=info.duration - 2.0, end=info.duration, short_side=64)
    assert len(opens) == 1
    assert info == clip_decoder.probe(media["bunny"]) and info.duration == pytest.approx(5.28)
    alone = decode_clip(media["bunny"], start=info.duration - 2.0, end=info.duration,
                        short_side=64)
    np.testing.assert_array_equal(clip.frames, alone.frames)
    np.testing.assert_array_equal(clip.waveform, alone.waveform)
    assert len(opens) == 3


def test_frames_are_picked_by_nearest_timestamp(media):
    # Source is 10 fps with frame k at brightness 8k: at 25 fps target j sits at j / 25 s,
    # nearest source frame round(j * 10 / 25).
    clip = decode_clip(media["good"], fps=25, short_side=None)
    assert clip.frames.shape == (75, 48, 64, 3)
    brightness = clip.frames.mean(axis=(1, 2, 3))
    for j in range(0, 75, 5):
        assert brightness[j] == pytest.approx(8 * round(j * 10 / 25), abs=3)
    slower = decode_clip(media["good"], fps=5, short_side=None)
    assert slower.frames.shape[0] == 15
    assert slower.frames.mean(axis=(1, 2, 3))[3] == pytest.approx(8 * 6, abs=3)


def test_audio_tone_survives_resampling(media):
    clip = decode_clip(media["good"])
    spectrum = np.abs(np.fft.rfft(clip.waveform[4000:20000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 16000 samples: 1 Hz per bin


@pytest.mark.parametrize("name, kwargs, kind, words", [
    ("missing", {}, "missing_file", "missing file"),
    ("text", {}, "not_a_video", "not a video file"),
    ("truncated", {}, "corrupt", "corrupt or truncated"),
    ("silent", {}, "no_audio", "no audio stream"),
    ("short", {"min_duration": 1.0}, "too_short", "shorter than asked"),
    ("good", {"start": 0.0, "end": 8.0}, "too_short", "shorter than asked"),
    ("good", {"start": 10.0}, "out_of_range", "outside"),
    ("good", {"start": 2.0, "end": 1.0}, "out_of_range", "need 0 <= start < end"),
])
def test_bad_input_raises_clip_error_naming_the_file(media, name, kwargs, kind, words):
    with pytest.raises(ClipError, match=words) as caught:
        decode_clip(media[name], **kwargs)
    assert caught.value.kind == kind
    assert media[name].split("/")[-1] in str(caught.value)


def test_missing_audio_policy_silence_keeps_the_clip(media):
    clip = decode_clip(media["silent"], missing_audio="silence")
    assert not clip.has_audio and clip.frames.shape[0] == 50
    assert clip.waveform.shape == (32000,) and not clip.waveform.any()


def test_file_object_source(media):
    with open(media["good"], "rb") as f:
        clip = decode_clip(f, name="in-memory.mp4")
    assert clip.frames.shape[0] == 75


def test_single_threaded_decoder_gives_the_same_clip(media):
    """The Beam job decodes with one thread per clip; serving with FFmpeg's threads."""
    threaded = decode_clip(media["bunny"], end=2.0)
    single = decode_clip(media["bunny"], end=2.0, decoder_threads=1)
    assert single.frames.shape == (50, 256, 455, 3)
    np.testing.assert_array_equal(threaded.frames, single.frames)
    np.testing.assert_array_equal(threaded.waveform, single.waveform)


def test_audio_stored_behind_the_video_is_found_by_windows_and_chunks(tmp_path):
    """A muxer that did not interleave (write_clip muxes all video, then all audio: FFmpeg
    holds up to 10 s) leaves the first 30 s of audio behind the video in the file; a window
    or a chunk must read on for it, not hand out silence as if the clip had sound."""
    path = write_clip(str(tmp_path / "behind.mkv"), 40.0)
    with av.open(path) as container:
        order = [(p.stream.type, float(p.pts * p.time_base)) for p in container.demux()
                 if p.size]
    first_audio = next(i for i, (kind, _) in enumerate(order) if kind == "audio")
    assert max(t for kind, t in order[:first_audio] if kind == "video") > 25.0
    whole = decode_clip(path).waveform
    assert np.abs(whole[: 40 * 16000]).max() > 0.5
    for start in (0.0, 3.0, 20.0, 35.0):
        window = decode_clip(path, start=start, end=start + 2.0)
        begin = int(start * 16000)
        np.testing.assert_array_equal(window.waveform, whole[begin:begin + 32000],
                                      err_msg=f"window at {start} s")
    chunks = np.concatenate([c.waveform for c in decode_chunks(path, chunk_seconds=10.0)])
    np.testing.assert_array_equal(chunks, whole)


def test_chunks_of_a_window_are_the_window_frame_for_frame_and_sample_for_sample(media):
    window = dict(start=0.3, end=4.1, short_side=64)
    whole = decode_clip(media["bunny"], **window)
    chunks = list(decode_chunks(media["bunny"], chunk_seconds=1.0, **window))
    assert [len(c.frames) for c in chunks] == [25, 25, 25, 20]
    assert (chunks[0].start, chunks[-1].end) == (whole.start, whole.end)
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
    np.testing.assert_array_equal(np.concatenate([c.waveform for c in chunks]), whole.waveform)
    assert sum(c.packets_read for c in chunks) == whole.packets_read


def _left_half_red(path, width, height, setup):
    """A real H.264 file of 10 stored frames whose left half is red; `setup(stream)` sets what
    the test is about (display matrix, pixel aspect) before encoding."""
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        setup(stream)
        stored = np.zeros((height, width, 3), np.uint8)
        stored[:, :width // 2] = (255, 0, 0)
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("rotation, red", [(-90, "top"), (90, "bottom"), (180, "right"),
                                           (0, "left")])
def test_a_phones_rotated_video_is_decoded_upright_as_players_show_it(tmp_path, rotation, red):
    """Phones store portrait video as landscape frames plus a display matrix (ffprobe: 'rotation
    of -90.00 degrees' for an iPhone held upright); FFmpeg's decoder leaves the turn to the
    player. Stored here: 64x32 frames whose left half is red."""
    path = _left_half_red(str(tmp_path / f"phone_{rotation}.mp4"), 64, 32,
                          lambda stream: stream.set_display_rotation(rotation))
    clip = decode_clip(path, fps=5, short_side=16, missing_audio="silence")
    portrait = rotation in (90, -90)
    assert clip.frames.shape[1:] == ((32, 16, 3) if portrait else (16, 32, 3))
    halves = {"top": clip.frames[:, :8], "bottom": clip.frames[:, -8:],
              "left": clip.frames[:, :, :8], "right": clip.frames[:, :, -8:]}
    opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[red]
    assert halves[red][..., 0].mean() > 200 and halves[opposite][..., 0].mean() < 50


def test_non_square_pixels_are_decoded_at_the_display_aspect(tmp_path):
    """An anamorphic file: 32x32 stored pixels, each twice as wide as high (SAR 2:1), shown
    64x32 by players; the left half of the picture is red."""
    from fractions import Fraction

    def anamorphic(stream):
        stream.codec_context.sample_aspect_ratio = Fraction(2, 1)
    path = _left_half_red(str(tmp_path / "anamorphic.mp4"), 32, 32, anamorphic)
    clip = decode_clip(path, fps=5, short_side=16, missing_audio="silence")
    assert clip.frames.shape[1:] == (16, 32, 3)
    assert clip.frames[:, :, :14, 0].mean() > 200 and clip.frames[:, :, 18:, 0].mean() < 50


def _with_cover_art(path, cover_only=False):
    """A file as music and phone apps write them: a one-frame MJPEG cover stream stored first
    (Matroska keeps it as a video stream), then the video (frames of rising grey) and audio."""
    with av.open(path, "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        if cover_only:
            cover.disposition = av.stream.Disposition.attached_pic
        else:
            video = out.add_stream("libx264", rate=10)
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
        out.mux(cover.encode(picture.reformat(format="yuvj420p")))
        out.mux(cover.encode())
        for i in range(0 if cover_only else 20):
            out.mux(video.encode(av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), i * 10, np.uint8), format="rgb24")))
        if not cover_only:
            out.mux(video.encode())
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 32000), np.float32), format="fltp",
                                           layout="mono")
        sound.sample_rate = 16000
        out.mux(audio.encode(sound))
        out.mux(audio.encode())
    return path


def test_the_video_is_decoded_not_the_cover_art_stored_before_it(tmp_path):
    clip = decode_clip(_with_cover_art(str(tmp_path / "with_cover.mkv")), fps=10,
                       short_side=None)
    assert clip.frames.shape == (20, 32, 32, 3)  # the cover was 16x16, one frame
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), np.arange(20) * 10, atol=3)


def test_music_with_only_cover_art_is_not_a_video(tmp_path):
    path = _with_cover_art(str(tmp_path / "song.mp4"), cover_only=True)
    with pytest.raises(ClipError, match="holds only a still picture") as error:
        decode_clip(path, missing_audio="silence")
    assert error.value.kind == "not_a_video"
