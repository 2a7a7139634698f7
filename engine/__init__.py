"""Segue's engine: the worker app, its settings and the command line."""

from engine.settings import Settings

__all__ = ["Settings"]
