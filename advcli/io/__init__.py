"""Files advcli writes and reads: atomic writes, run folders, resume states, provenance, figures."""
