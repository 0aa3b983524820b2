"""Training: a run's plan (``plan``, no heavy imports), the TRL trainer (``trainer``, the only module
importing TRL), the run's evaluation (``evaluator``) and one run end to end (``train``)."""
