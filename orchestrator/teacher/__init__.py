"""The teacher side: the model and its checkpoints, inference, training (in process or on Ray Train), and
the logit cache (in process, or built across a Ray cluster)."""
