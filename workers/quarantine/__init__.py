"""Quarantine in the registry: preserve an image in the quarantine repository, take it out of service, restore it."""
