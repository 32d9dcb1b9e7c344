"""Files advcli writes and reads: atomic writes and their destinations, run folders, resume states,
the schemas of the JSON it reads back, stored tensors' layouts, provenance, figures."""
