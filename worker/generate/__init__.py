"""The compute of the `generate` kind: loading a model to a plan, and streaming generation."""
