"""kdsweep: Ray-distributed knowledge distillation of a ResNet-50 into a <=100k-parameter student."""

__version__ = "0.1.0"
