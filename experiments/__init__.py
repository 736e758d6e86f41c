"""equilib's experiments: one folder each, run as ``python -m experiments.<name> --config default|smoke --workdir DIR``."""
