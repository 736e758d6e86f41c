"""equilib's experiments: one folder each (``python -m experiments --list``), run as
``python -m experiments.<name> --config default|smoke --workdir DIR``."""
