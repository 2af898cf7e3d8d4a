"""Helpers the tests share: the toolchain environment and plugin launchers."""
