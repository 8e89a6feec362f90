"""Files and records, below everything else: atomic writes, bounded readers, fingerprints, provenance.

Nothing here imports the rest of jaxgd: the models, the data and the run directories use it.
"""
