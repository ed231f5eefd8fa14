"""Jobs: a config prepared once, the service that owns each job's life, admission, the backends."""
