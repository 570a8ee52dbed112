"""The HTTP service, its packaging, and the request log the drift monitor reads."""
