"""Training augmentations of the paper (section 4.2), as TensorFlow ops.

RGB: random resized crop, horizontal flip and colour jitter, one draw per clip
so the frames of a clip stay consistent (the standard video recipe of ViViT [6]).
Spectrogram: SpecAugment [47] with AST's [24] mask caps. Batch: mixup [62].
The crop and SpecAugment run in tf.data. Flip, colour jitter and mixup are drawn
there as a plan (a few numbers per example) and applied by `apply_plan`, in tf.data
or in the training step, where they are elementwise work for the accelerator.
"""
import tensorflow as tf

from mbt_keras import contract

# AST's caps for a 1024-frame input at 100 frames/s; the paper keeps them for 8 s windows.
SPEC_TIME_MASK = 192
SPEC_FREQ_MASK = 48
SPEC_REFERENCE_FRAMES = 800
# Crop and jitter ranges of DMVR's default video augmentation, which Scenic's MBT uses.
CROP_AREA = (0.3, 1.0)
CROP_ASPECT = (0.75, 4.0 / 3.0)
COLOR_JITTER_PROB = 0.8


def random_crop_window(jpeg):
    """[y, x, h, w] of a random resized crop of the frames stored as `jpeg`."""
    shape = tf.image.extract_jpeg_shape(jpeg)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.1, aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def centre_crop_window(jpeg):
    """[y, x, h, w] of the central square covering contract.CENTRE_CROP_FRACTION of the
    short side."""
    shape = tf.image.extract_jpeg_shape(jpeg)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) *
                   contract.CENTRE_CROP_FRACTION,
                   tf.int32)
    return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])


# Keys of an augmentation plan: the random draws of one example's flip and colour jitter
# (RGB_DRAWS, [B] in a batch) and one batch's mixup weights, [number of inputs] in sorted key
# order: MIXUP (one weight, repeated) or MODALITY_MIXUP (one per input, Scenic's mixmod).
RGB_DRAWS = ("flip", "jitter", "brightness", "saturation", "contrast", "hue")
MIXUP = "mixup"
MODALITY_MIXUP = "modality_mixup"
# Training frames leave tf.data in [0, 255] and are scaled to [0, 1] with the plan (one
# multiply fused into the step's pass) instead of by a pass on the host.
RGB_SCALE = "rgb_scale"
# With the resize in the step, tf.data hands over each clip's decoded crop zero-padded into a
# fixed [F, rows, cols, 3] uint8 buffer (`input_pipeline.padded_crops`): CROP_SIZE ([B, 2]
# int32) is the crop's (rows, cols) there, CROP_TRANSPOSED ([B], 1.0 or 0.0) marks crops of
# portrait frames, stored transposed so that their long side runs along the buffer's.
CROP_SIZE = "crop_size"
CROP_TRANSPOSED = "crop_transposed"
PLAN_RGB_KEYS = (RGB_SCALE, CROP_SIZE, CROP_TRANSPOSED)


def draw_rgb_plan():
    """One clip's flip (p=0.5) and colour jitter (p=0.8) draws, as scalars under RGB_DRAWS:
    DMVR's brightness +-32/255, saturation and contrast in [0.6, 1.4], hue +-0.2."""
    def coin(p):
        return tf.cast(tf.random.uniform([]) < p, tf.float32)
    return {"flip": coin(0.5), "jitter": coin(COLOR_JITTER_PROB),
            "brightness": tf.random.uniform([], -32.0 / 255.0, 32.0 / 255.0),
            "saturation": tf.random.uniform([], 0.6, 1.4),
            "contrast": tf.random.uniform([], 0.6, 1.4),
            "hue": tf.random.uniform([], -0.2, 0.2)}


def _per_clip(value):
    """A per-clip value (scalar, or [B]) broadcast over its clip's frames [..., F, H, W, 3]."""
    return value[..., None, None, None, None]


def bilinear_weights(valid, padded: int, out: int):
    """[..., out, padded]: tf.image.resize's bilinear interpolation (half-pixel centres, no
    antialiasing) from the first `valid` of `padded` positions to `out`, as a matrix whose
    columns past `valid` are zero. `valid` is an int tensor of any shape (one per clip)."""
    valid = tf.cast(valid, tf.int32)[..., None]
    scale = tf.cast(valid, tf.float32) / float(out)
    position = (tf.range(out, dtype=tf.float32) + 0.5) * scale - 0.5
    below = tf.floor(position)
    lerp = (position - below)[..., None]
    last = valid - 1
    lower = tf.clip_by_value(tf.cast(below, tf.int32), 0, last)
    upper = tf.clip_by_value(tf.cast(tf.math.ceil(position), tf.int32), 0, last)
    return (1.0 - lerp) * tf.one_hot(lower, padded) + lerp * tf.one_hot(upper, padded)


def resize_crops(buffers, size, transposed, image_size: int):
    """float32 [B, F, S, S, 3]: each clip's crop, held in the top-left (rows, cols) = size of its
    padded buffer [B, F, R, C, 3], bilinearly resized to S = image_size as tf.image.resize
    would resize the crop alone (to float rounding), and transposed back where `transposed`.

    Two batched matrix products (columns, then rows), one pair of interpolation matrices per
    clip: ~2 GFLOP per example at the paper's settings, 0.2% of the model's step, done where
    the model runs instead of on the host. On TPUs (bf16 passes) and GPUs with TF32 the
    products round the weights to 8-10 bits of mantissa, about one pixel level at most (not
    measured: no accelerator here; pixel values themselves are exact there)."""
    frames = tf.cast(buffers, tf.float32)
    rows = bilinear_weights(size[:, 0], buffers.shape[2], image_size)
    cols = bilinear_weights(size[:, 1], buffers.shape[3], image_size)
    frames = tf.einsum("bjw,bfhwc->bfhjc", cols, frames)
    frames = tf.einsum("bih,bfhjc->bfijc", rows, frames)
    flip_back = _per_clip(transposed) > 0.5
    return tf.where(flip_back, tf.transpose(frames, [0, 1, 3, 2, 4]), frames)


def _rgb_plan(frames, plan, image_size=None):
    """Flip, then colour jitter, frames [..., F, H, W, 3] in [0, 1] as `plan` drew them, one
    draw per clip: plan values have the shape of frames' leading axes (scalars for one clip,
    [B] for a batch), so the same function runs per example in tf.data or per batch in the
    training step (on the accelerator) with equal results. A plan with CROP_SIZE first
    resizes the batch's padded crops to image_size; one with RGB_SCALE scales them."""
    if CROP_SIZE in plan:
        frames = resize_crops(frames, plan[CROP_SIZE], plan[CROP_TRANSPOSED], image_size)
    if RGB_SCALE in plan:
        frames = frames * _per_clip(plan[RGB_SCALE])
    flipped = tf.where(_per_clip(plan["flip"]) > 0.5, tf.reverse(frames, axis=[-2]), frames)
    jittered = _colour_jitter(flipped, *(_per_clip(plan[k]) for k in RGB_DRAWS[2:]))
    return tf.where(_per_clip(plan["jitter"]) > 0.5, jittered, flipped)


def _colour_jitter(frames, brightness, saturation, contrast, hue):
    """tf.image's random_brightness, random_saturation, random_contrast and random_hue with
    the drawn values, in that order, then a clip to [0, 1]. Saturation and hue are done in RGB
    (adjust_saturation, adjust_hue) so XLA fuses the whole jitter into one pass over the
    frames: a third of the CPU time of the four tf.image kernels (docs/benchmarks.md). The
    values are scalars or broadcast over frames [..., H, W, 3] (one per clip of a batch)."""
    frames = frames + brightness
    frames = adjust_saturation(frames, saturation)
    frames = adjust_contrast(frames, contrast)
    frames = adjust_hue(frames, hue)
    return tf.clip_by_value(frames, 0.0, 1.0)


# XLA-fused (one pass over the frames) where the caller runs TensorFlow's own executor:
# tf.data, and training steps on CPU / GPU. A TPU step is compiled whole, so it takes the
# plain ops (apply_plan(fused=False)) rather than a nested XLA function.
apply_rgb_plan = tf.function(_rgb_plan, jit_compile=True)
colour_jitter = tf.function(_colour_jitter, jit_compile=True)


def flip_and_jitter(frames):
    """Horizontal flip with p=0.5, then colour jitter with p=0.8; frames [F,H,W,3] in [0,1]."""
    return apply_rgb_plan(frames, draw_rgb_plan())


def adjust_contrast(frames, factor):
    """tf.image.adjust_contrast (each frame's channel mean plus `factor` times the distance
    to it) with a factor that may differ per clip, which TensorFlow's kernel does not take."""
    mean = tf.reduce_mean(frames, axis=[-3, -2], keepdims=True)
    return (frames - mean) * factor + mean


def _value_and_range(channels):
    """Per pixel: HSV's value (the largest channel) and the smallest channel."""
    r, g, b = channels
    return tf.maximum(r, tf.maximum(g, b)), tf.minimum(r, tf.minimum(g, b))


def adjust_saturation(rgb, factor):
    """tf.image.adjust_saturation (HSV saturation times `factor`, clipped to [0, 1]) in RGB.

    Hue and value stay, so every channel moves along the line to the value:
    c' = v - (v - c) * s'/s, and pixels with v <= 0 become grey at v, as TensorFlow's kernel
    makes them. Equal to it to float rounding (tested); unlike it, XLA can fuse it.
    """
    channels = tf.split(rgb, 3, axis=-1)
    value, low = _value_and_range(channels)
    saturation = tf.where(value > 0, tf.math.divide_no_nan(value - low, value), 0.0)
    scale = tf.math.divide_no_nan(tf.clip_by_value(saturation * factor, 0.0, 1.0), saturation)
    return tf.concat([value - (value - c) * scale for c in channels], axis=-1)


def adjust_hue(rgb, delta):
    """tf.image.adjust_hue (hue rotated by `delta` turns) in RGB: the largest and smallest
    channel stay, the hue moves on HSV's hexagon and each channel is the smallest plus the
    range times its piecewise-linear share of that hue. Equal to TensorFlow's kernel to float
    rounding (tested); unlike it, XLA can fuse it."""
    r, g, b = channels = tf.split(rgb, 3, axis=-1)
    high, low = _value_and_range(channels)
    spread = high - low
    hue = tf.where(tf.equal(r, high), tf.math.divide_no_nan(g - b, spread),
                   tf.where(tf.equal(g, high), tf.math.divide_no_nan(b - r, spread) + 2.0,
                            tf.math.divide_no_nan(r - g, spread) + 4.0))
    hue = tf.math.floormod(hue + 6.0 * delta, 6.0)
    shares = (tf.abs(hue - 3.0) - 1.0, 2.0 - tf.abs(hue - 2.0), 2.0 - tf.abs(hue - 4.0))
    return tf.concat([low + spread * tf.clip_by_value(share, 0.0, 1.0) for share in shares],
                     axis=-1)


def spec_mask_caps(spec_frames: int, mel_bins: int):
    """(time cap, frequency cap): AST's 192 / 48, scaled down for windows shorter than 8 s.

    A 192-frame mask would blank a tiny preset's whole window, so the time cap
    keeps AST's proportion (192 of 800 frames) below 800 frames.
    """
    time_cap = min(SPEC_TIME_MASK, SPEC_TIME_MASK * spec_frames // SPEC_REFERENCE_FRAMES)
    return time_cap, min(SPEC_FREQ_MASK, mel_bins // 2)


def _mask(length, cap):
    """Boolean [length] with one random run of width U[0, cap] set."""
    width = tf.random.uniform([], 0, cap + 1, dtype=tf.int32)
    start = tf.random.uniform([], 0, length - width + 1, dtype=tf.int32)
    positions = tf.range(length)
    return (positions >= start) & (positions < start + width)


def spec_augment(spec, fill_value: float):
    """One time mask and one frequency mask (as AST) on spec [T, M].

    Masked cells take `fill_value`, the dataset mean, so they are zero after the
    model's normalisation, as in SpecAugment's mean masking.
    """
    frames, bins = spec.shape
    time_cap, freq_cap = spec_mask_caps(frames, bins)
    masked = _mask(frames, time_cap)[:, None] | _mask(bins, freq_cap)[None, :]
    return tf.where(masked, tf.constant(fill_value, spec.dtype), spec)


def _beta(alpha, shape=()):
    """Beta(alpha, alpha) from two Gamma draws (tf.random has no Beta sampler)."""
    a = tf.random.gamma(shape, alpha)
    b = tf.random.gamma(shape, alpha)
    return a / (a + b)


def draw_mixup(alpha: float, num_inputs: int, per_modality: bool = False):
    """Mixup weights [num_inputs]: one Beta(alpha, alpha) draw shared, or one per input."""
    return _beta(alpha, [num_inputs]) if per_modality else tf.fill([num_inputs], _beta(alpha))


def mixup_key(per_modality: bool) -> str:
    """The plan key that holds a batch's mixup weights."""
    return MODALITY_MIXUP if per_modality else MIXUP


def apply_mixup(features, labels, weights, per_modality: bool = False):
    """Mixup [62] of a batch with itself reversed: x = l x_i + (1 - l) x_j, input k (in
    sorted key order) with weights[k]. The labels are mixed with weights[0] (the weights are
    one draw), or with `per_modality` (Scenic's mixmod) once per input with that input's
    weight, as {input key: labels}: each modality's loss then takes its own labels."""
    mixed, mixed_labels = {}, {}
    for i, key in enumerate(sorted(features)):
        x = features[key]
        mixed[key] = weights[i] * x + (1.0 - weights[i]) * tf.reverse(x, axis=[0])
        mixed_labels[key] = weights[i] * labels + (1.0 - weights[i]) * tf.reverse(labels, axis=[0])
    return mixed, mixed_labels if per_modality else mixed_labels[sorted(features)[0]]


def mixup(features, labels, alpha: float, per_modality: bool = False):
    """Mixup of a batch with weights drawn now. `per_modality` ("modality mixup") draws an
    independent weight for each input and mixes the labels with each (apply_mixup)."""
    return apply_mixup(features, labels, draw_mixup(alpha, len(features), per_modality),
                       per_modality)


def apply_plan(features, labels, plan, fused: bool = True, image_size: int = None):
    """A batch's planned augmentation: resizing of padded 'rgb' crops to image_size (when the
    plan has CROP_SIZE), scaling to [0, 1] (RGB_SCALE), flip + colour jitter per clip
    (RGB_DRAWS), then mixup (MIXUP or MODALITY_MIXUP). Runs in tf.data or in the training step; `fused=False`
    for a step XLA compiles whole (TPU)."""
    if CROP_SIZE in plan and not image_size:
        raise ValueError("a plan with padded crops needs the image_size to resize them to")
    if "rgb" in features and "flip" in plan:
        rgb_plan = apply_rgb_plan if fused else _rgb_plan
        keys = RGB_DRAWS + tuple(k for k in PLAN_RGB_KEYS if k in plan)
        features = dict(features, rgb=rgb_plan(features["rgb"], {k: plan[k] for k in keys},
                                               image_size))
    elif "rgb" in features and RGB_SCALE in plan:
        features = dict(features, rgb=features["rgb"] * _per_clip(plan[RGB_SCALE]))
    for per_modality in (False, True):
        if mixup_key(per_modality) in plan:
            features, labels = apply_mixup(features, labels, plan[mixup_key(per_modality)],
                                           per_modality)
    return features, labels
