"""Contracts that cross folders: feature keys, signature names and their tensors.

Plain constants with no TensorFlow import, so `serving/` can read the exported
model's contract without pulling in training code.
"""

# --- TFRecords: tf.train.SequenceExample following DMVR / Scenic MBT keys ----
# Feature lists (one element per frame / per second of audio).
IMAGE_ENCODED = "image/encoded"              # bytes, one JPEG per frame
MELSPEC = "melspec/feature/floats"           # float, 100 frames x 128 bins per second
WAVEFORM = "WAVEFORM/feature/floats"         # float, optional, 16000 samples per second
# Context features.
LABEL_INDEX = "clip/label/index"             # int64, one or more class indices
LABEL_STRING = "clip/label/string"           # bytes, the matching class names
VIDEO_FILENAME = "video/filename"            # bytes, source path or URI
CLIP_ID = "clip/id"                          # bytes
CLIP_FPS = "clip/frame_rate"                 # float, fps of the stored frames
CLIP_SAMPLE_RATE = "clip/audio/sample_rate"  # int64, Hz of the stored waveform
CLIP_START = "clip/start/timestamp"          # float, seconds into the source
CLIP_END = "clip/end/timestamp"              # float, seconds into the source
CLIP_DURATION = "clip/duration"              # float, seconds actually stored
HAS_AUDIO = "clip/has_audio"                 # int64, 0 when audio was filled with silence
SKIPPED_PACKETS = "clip/decode/skipped_packets"  # int64, damaged packets the decoder skipped

# --- Audio front end (paper 4.2, AST) ---------------------------------------
SAMPLE_RATE = 16000
MEL_BINS = 128
SPEC_FRAMES_PER_SECOND = 100
WINDOW_SAMPLES = 400   # 25 ms
HOP_SAMPLES = 160      # 10 ms
FPS = 25

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
