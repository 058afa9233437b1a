"""Pushing bundles to boards and running them there."""
