"""Heliox schema migration runner (`heliox-migrate`)."""
