"""Contracts that cross folders: feature keys, signature names and their tensors.

Plain constants with no TensorFlow import, so `serving/` can read the exported
model's contract without pulling in training code.
"""

# --- TFRecords: tf.train.SequenceExample following DMVR / Scenic MBT keys ----
# Read by DMVR's add_image / add_label / add_audio and Scenic's MBT add_spectrogram unchanged
# (docs/data_format.md). Version 1 records (before RECORD_FORMAT_VERSION) stay readable.
# Feature lists (one element per frame / per second of log-mel).
IMAGE_ENCODED = "image/encoded"              # bytes, one JPEG per frame
MELSPEC = "melspec/feature/floats"           # float, 100 frames x 128 bins per second
WAVEFORM = "WAVEFORM/feature/floats"         # float, optional: the whole waveform as ONE element
# Context features.
LABEL_INDEX = "clip/label/index"             # int64, one or more class indices
LABEL_TEXT = "clip/label/text"               # bytes, the matching class names (DMVR's key)
LABEL_STRING = "clip/label/string"           # bytes, label names of version-1 records (read only)
VIDEO_FILENAME = "video/filename"            # bytes, source path or URI
CLIP_ID = "clip/id"                          # bytes
CLIP_FPS = "clip/frame_rate"                 # float, fps of the stored frames
CLIP_SAMPLE_RATE = "clip/audio/sample_rate"  # int64, Hz of the stored waveform
CLIP_START = "clip/start/timestamp"          # int64, microseconds into the source (MediaSequence)
CLIP_END = "clip/end/timestamp"              # int64, microseconds into the source (MediaSequence)
CLIP_DURATION = "clip/duration"              # float, seconds actually stored
HAS_AUDIO = "clip/has_audio"                 # int64, 0 when audio was filled with silence
SKIPPED_PACKETS = "clip/decode/skipped_packets"  # int64, damaged packets the decoder skipped
FORMAT_VERSION = "clip/format_version"       # int64, RECORD_FORMAT_VERSION; absent in version 1
RECORD_FORMAT_VERSION = 2
# Record files: GZIP when the name ends with this suffix, else uncompressed (the rule TFX's
# readers, tfx_bsl and Beam's CompressionTypes.AUTO, apply to an Examples artifact's files).
GZIP_SUFFIX = ".gz"
RECORD_COMPRESSIONS = ("none", "gzip")  # mbt preprocess --compression; "none" is the default

# --- Audio front end (paper 4.2, AST) ---------------------------------------
SAMPLE_RATE = 16000
MEL_BINS = 128
SPEC_FRAMES_PER_SECOND = 100
WINDOW_SAMPLES = 400   # 25 ms
HOP_SAMPLES = 160      # 10 ms
FPS = 25
# Evaluation and serving look at the central square of this fraction of a frame's short side:
# 224 of frames stored at a short side of 256 (the eval protocol; `augment.centre_crop_window`).
CENTRE_CROP_FRACTION = 224.0 / 256.0

# --- Model inputs (keras.Model) ---------------------------------------------
INPUT_RGB = "rgb"      # float32 [B, F, H, W, 3], scaled as the model's preprocessing expects
INPUT_SPEC = "spec"    # float32 [B, T, MEL_BINS] log-mel
OUTPUT_LOGITS = "logits"

# --- Exported SavedModel -----------------------------------------------------
SIG_SERVING = "serving_default"   # JPEG frames + waveform -> scores, top-k
SIG_UINT8 = "serving_uint8"       # uint8 frames + waveform -> scores, top-k
SIG_EXAMPLES = "examples"         # serialized SequenceExamples -> scores (TFMA)
SIG_LABELS = "transformed_labels"  # serialized SequenceExamples -> LABEL_KEY (TFMA runs it by default)

IN_FRAMES_JPEG = "frames"         # tf.string [B, F]
IN_FRAMES_UINT8 = "frames_uint8"  # tf.uint8 [B, F, H, W, 3]
IN_WAVEFORM = "waveform"          # tf.float32 [B, S] 16 kHz mono in [-1, 1]
IN_EXAMPLES = "examples"          # tf.string [B]

OUT_SCORES = "scores"             # float32 [B, C] (sigmoid or softmax of logits)
OUT_TOP_K_NAMES = "top_k_names"   # string [B, K]
OUT_TOP_K_SCORES = "top_k_scores"  # float32 [B, K]
OUT_TOP_K = 5

LABEL_KEY = "labels"              # dense multi-hot/one-hot labels for TFMA
CLASS_NAMES_ASSET = "class_names.txt"

# --- Input contract and request bounds (mbt_keras/input_contract.py) ---------
SIG_CONTRACT = "input_contract"    # no inputs -> OUT_CONTRACT
OUT_CONTRACT = "contract"          # string scalar: the InputContract as JSON
CONTRACT_ASSET = "input_contract.json"
MAX_FRAMES = 1024                  # frames per clip in one request (40 s at 25 fps)
MAX_WAVEFORM_SAMPLES = 60 * SAMPLE_RATE  # samples per clip in one request
MIN_IMAGE_SIDE = 16                # px; smaller frames carry nothing the model can use
MAX_IMAGE_SIDE = 4096              # px; larger frames are refused before decoding
WAVEFORM_LIMIT = 2.0               # |sample| bound: float PCM is [-1, 1], lossy decoders overshoot

# --- Console (pipeline/log_level.py) -------------------------------------------
# Set (to "1") when `mbt` itself silenced TensorFlow's C++ logs, so that `mbt serve` can give
# the official tensorflow_model_server, whose log is its output, its default level back.
QUIETED_TF_LOGS_ENV = "MBT_QUIETED_TF_LOGS"
