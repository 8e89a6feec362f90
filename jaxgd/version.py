"""jaxgd's version, recorded with every result (a module of its own, so that any layer may read it)."""
__version__ = "0.2.0"
