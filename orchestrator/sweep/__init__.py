"""A sweep: prepare (budget, data, teacher logits once), the driver (Ray Tune + ASHA, the final stage, the
results table), the local runner without Ray (`kdsweep train`), and the Ray session bookkeeping."""
