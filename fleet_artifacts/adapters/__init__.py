"""Adapters: one module per backend, each translating its SDK's errors."""
