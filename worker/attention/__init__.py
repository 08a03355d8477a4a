"""The compute of the `attention` kind: statistics, the bare formula, models, and the heatmap."""
