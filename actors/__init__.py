"""distress actors layer."""
