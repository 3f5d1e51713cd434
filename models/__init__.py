"""distress models layer."""
