"""Offline equivalents of Pulumi plugins that cannot be fetched here.

Each is a gRPC server speaking the real plugin protocol.
"""
