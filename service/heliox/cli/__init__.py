"""Command-line programs of the image (heliox-admin)."""
