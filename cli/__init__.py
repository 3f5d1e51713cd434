"""distress cli layer."""
