"""The HTTP scoring server (Flask app factory, run by gunicorn in the serve image)."""
