"""Loaders for the real datasets Axon trains on, the text tokenizer, and seeded splits.

Modules hold numpy/stdlib code only (no torch), so the service and tests can import them cheaply.
"""
