"""Run files: directories committed as a unit, checkpoints, live logs, reading runs back and comparing them."""
