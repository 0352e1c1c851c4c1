"""The package version, in one place: the package and every module that reports it read it here."""

__version__ = "0.1.0"
