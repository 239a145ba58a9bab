"""What a finished run becomes: the export (weights, .pt2, ONNX, metrics), the results table, the report and
its plots, and predict."""
