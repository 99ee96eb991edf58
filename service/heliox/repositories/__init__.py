"""Data access functions: plain SQLAlchemy on a Session, no web concerns."""
