"""Task Machine: put AI coding agents to work on computers you control."""

__version__ = "0.1.0"
