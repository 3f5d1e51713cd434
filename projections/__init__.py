"""distress projections layer."""
