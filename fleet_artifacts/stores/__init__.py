"""Adapters implementing the core's ports: Azure Blob, local files, SQLite, Cosmos DB.

They import the core (for its ports, models and errors), never ``fleet_artifacts.routes`` or litestar.
"""
