"""The domain and its ports: artifacts, uploads, sessions, sweeps.

Imports neither litestar nor azure nor ``fleet_artifacts.stores``/``routes`` (a test enforces it).
"""
