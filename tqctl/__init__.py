"""tqctl: the command line and console that run and watch the engine."""
