"""The one-shot jobs that run inside the train and predict images."""
