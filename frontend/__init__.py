"""distress frontend layer."""
