"""Pretrained weights: ImageNet-21k ViT initialisation (`vit_npz`) and the authors'
released Scenic MBT checkpoints (`scenic_import`, read by `flax_msgpack` without JAX)."""
