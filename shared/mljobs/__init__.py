"""mljobs: train, batch-predict and serve tabular models as containerized jobs."""

__version__ = "0.1.0"
