"""The package version, in a module that imports nothing (the engine reads it for file headers)."""
__version__ = "0.1.0"
