"""log_mel_spectrogram against an independent NumPy Kaldi fbank written from its definition."""
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras.log_mel import log_mel_spectrogram

# float32 TF vs float64 NumPy: measured max 5e-4 on these signals and on 2 s of real Big Buck
# Bunny audio (AST-level agreement, LOGMEL.md); 2e-3 leaves room for BLAS/FFT variation.
TOLERANCE = 2e-3


def _mel(hz):
    return 1127.0 * np.log(1.0 + hz / 700.0)


def kaldi_fbank(wave, window="hann"):
    """Kaldi's compute-fbank-feats (snip_edges, DC removal, pre-emphasis, HTK mel banks
    built as in kaldi/feat/mel-computations.cc), on the end-padded signal."""
    wave = np.concatenate([wave.astype(np.float64), np.zeros(240)])
    n_frames = 1 + (len(wave) - 400) // 160
    i = np.arange(400)
    a = 2 * np.pi * i / 399
    win = 0.5 - 0.5 * np.cos(a) if window == "hann" else 0.54 - 0.46 * np.cos(a)
    fft_bin_hz = 16000 / 512
    lo, hi = _mel(20.0), _mel(8000.0)
    delta = (hi - lo) / 129
    bin_mel = _mel(fft_bin_hz * np.arange(256))
    banks = np.zeros((128, 256))
    for m in range(128):
        left, center, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        up = (bin_mel - left) / (center - left)
        down = (right - bin_mel) / (right - center)
        inside = (bin_mel > left) & (bin_mel < right)
        banks[m] = np.where(inside, np.where(bin_mel <= center, up, down), 0.0)
    out = np.zeros((n_frames, 128))
    for t in range(n_frames):
        x = wave[t * 160: t * 160 + 400].copy()
        x -= x.mean()
        x[1:] -= 0.97 * x[:-1].copy()
        x[0] -= 0.97 * x[0]
        power = np.abs(np.fft.rfft(x * win, 512))[:256] ** 2
        out[t] = np.log(np.maximum(banks @ power, 1.1920928955078125e-07))
    return out


def _test_wave(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    return (chirp + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("window", ["hann", "hamming"])
def test_matches_numpy_kaldi_fbank(window):
    wave = _test_wave(1.0)
    got = log_mel_spectrogram(wave, window=window).numpy()
    want = kaldi_fbank(wave, window)
    assert got.shape == want.shape == (100, 128)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_one_second_gives_exactly_100_frames_and_odd_lengths_floor():
    for samples, frames in [(16000, 100), (16159, 100), (16160, 101), (48000, 300), (200, 1)]:
        assert log_mel_spectrogram(np.zeros(samples, np.float32)).shape == (frames, 128)


def test_hann_and_hamming_differ():
    wave = _test_wave(0.5)
    diff = np.abs(log_mel_spectrogram(wave, "hann") - log_mel_spectrogram(wave, "hamming"))
    assert diff.max() > 0.05


def test_batched_equals_per_item_and_runs_in_a_graph():
    waves = np.stack([_test_wave(0.5, seed) for seed in range(3)])
    fn = tf.function(log_mel_spectrogram,
                     input_signature=[tf.TensorSpec([None, None], tf.float32)])
    batched = fn(waves).numpy()
    assert batched.shape == (3, 50, 128)
    for k in range(3):
        np.testing.assert_allclose(batched[k], log_mel_spectrogram(waves[k]).numpy(), atol=1e-5)


def test_silence_hits_the_log_floor():
    out = log_mel_spectrogram(np.zeros(1600, np.float32)).numpy()
    np.testing.assert_allclose(out, np.log(1.1920928955078125e-07), rtol=1e-6)


def test_unknown_window_is_rejected():
    with pytest.raises(ValueError, match="window='blackman'"):
        log_mel_spectrogram(np.zeros(1600, np.float32), window="blackman")


def test_a_ten_second_clip_matches_numpy_in_every_frame():
    """Regression: tf.einsum('...f,fm->...m') under oneDNN corrupted frames 150+ of a 3 s
    clip (and 500+ of 10 s), so stored features disagreed with a serving window's."""
    wave = _test_wave(10.0, seed=3)
    got = log_mel_spectrogram(wave).numpy()
    want = kaldi_fbank(wave)
    assert got.shape == want.shape == (1000, 128)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_a_window_of_a_clip_equals_the_same_frames_of_the_whole_clip():
    """What serving computes on a window is what preprocessing stored for those frames."""
    wave = _test_wave(3.0, seed=4)
    whole = log_mel_spectrogram(wave).numpy()
    window = log_mel_spectrogram(wave[54 * 160:54 * 160 + 192 * 160]).numpy()
    np.testing.assert_allclose(window[:-3], whole[54:54 + 189], atol=1e-4, rtol=0)
