"""snowsage: the runtime library shared by the connectivity check Lambda, the notebook and the CLI."""

__version__ = "0.1.0"
