"""The faces a user meets: the command line, the demo, the study, the showcase and app launchers."""
