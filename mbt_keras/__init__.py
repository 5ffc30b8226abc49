"""MBT (Nagrani et al., NeurIPS 2021) in Keras 3: model, features, input pipeline, metrics.

Depends on TensorFlow and Keras only; knows nothing of TFX, Beam or serving.
"""
