"""Writing converted networks out: the native saved format (and, later, NIR)."""
