"""Studies: variants × seeds, their store and their statistics."""
