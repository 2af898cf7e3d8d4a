"""Pieces the offline plugins share: serving a gRPC plugin and marshalling property values."""
