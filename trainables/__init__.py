"""The distillation training loop (plain PyTorch), its losses, batched augmentation and the Ray Tune trainable."""
