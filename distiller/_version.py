"""The single source of the package version (read by setup.py and distiller/__init__.py)."""
__version__ = "0.5.0.dev0"
