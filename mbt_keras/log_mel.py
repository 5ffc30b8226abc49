"""The one log-mel front end shared by preprocessing, training and serving (paper 4.2).

The paper follows AST, whose features are Kaldi fbank (torchaudio `compliance.kaldi.fbank`
with htk_compat, no dither, no energy): 25 ms frames every 10 ms, per-frame DC removal,
pre-emphasis 0.97, a symmetric window, a 512-point power spectrum, 128 HTK mel bands over
20 Hz - 8 kHz and a natural log floored at float32 epsilon. Written with `tf.signal` so the
same graph runs in Beam, in `tf.data` and inside the exported SavedModel: training and
serving cannot skew.
"""
import tensorflow as tf

from mbt_keras import contract

FFT_LENGTH = 512
PREEMPHASIS = 0.97
LOWER_HZ = 20.0
UPPER_HZ = 8000.0
LOG_FLOOR = 1.1920928955078125e-07  # float32 epsilon, Kaldi's floor
# Kaldi's snip_edges framing yields 1 + (S - 400) // 160 frames; padding the end by
# window - hop samples makes it S // 160, i.e. exactly 100 frames per second.
END_PADDING = contract.WINDOW_SAMPLES - contract.HOP_SAMPLES

_WINDOWS = {
    # Kaldi's "hanning" (what AST and the released models used) and the paper's Hamming,
    # both symmetric as in Kaldi; the periodic variants differ by up to 1.08 in log-mel.
    "hann": tf.signal.hann_window,
    "hamming": tf.signal.hamming_window,
}


def log_mel_spectrogram(waveform, window: str = "hann") -> tf.Tensor:
    """16 kHz mono float waveform [..., S] in [-1, 1] -> log-mel [..., S // 160, 128].

    The end is padded with END_PADDING zeros: Kaldi framing alone gives 98 frames per
    second (998 for 10 s), but the DMVR records store 100 frames x 128 bins per second and
    the model's `spec_frames` counts 100 per second, so one second must give exactly 100
    frames. Every frame starts where Kaldi's does; only the last few see the zero padding.
    """
    if window not in _WINDOWS:
        raise ValueError(f"window={window!r}: expected one of {sorted(_WINDOWS)}")
    waveform = tf.convert_to_tensor(waveform, dtype=tf.float32)
    paddings = tf.concat([tf.zeros([tf.rank(waveform) - 1, 2], tf.int32),
                          [[0, END_PADDING]]], axis=0)
    padded = tf.pad(waveform, paddings)
    frames = tf.signal.frame(padded, contract.WINDOW_SAMPLES, contract.HOP_SAMPLES,
                             pad_end=False)
    frames = frames - tf.reduce_mean(frames, axis=-1, keepdims=True)
    # Kaldi's pre-emphasis: x[i] -= 0.97 x[i-1], and x[0] -= 0.97 x[0].
    previous = tf.concat([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - PREEMPHASIS * previous
    frames = frames * _WINDOWS[window](contract.WINDOW_SAMPLES, periodic=False)
    spectrum = tf.signal.rfft(frames, fft_length=[FFT_LENGTH])
    power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        contract.MEL_BINS, FFT_LENGTH // 2 + 1, contract.SAMPLE_RATE, LOWER_HZ, UPPER_HZ)
    # Not tf.einsum("...f,fm->...m"): with oneDNN on (TF 2.16's default) it returns wrong rows
    # from the middle on for a rank-2 input of 300+ frames (measured; tests/mbt_keras/test_log_mel.py).
    mel = tf.tensordot(power, mel_matrix, axes=1)
    return tf.math.log(tf.maximum(mel, LOG_FLOOR))
