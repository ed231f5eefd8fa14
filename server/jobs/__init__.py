"""Jobs: the service that owns each job's life, admission, backends and the engine worker."""
