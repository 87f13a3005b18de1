"""Revisions of the plugin's schema, oldest first: ``0001_initial.py``, ``0002_…``."""
