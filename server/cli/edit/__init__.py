"""`kontext edit`: one dev-kontext edit from the shell, on a server or in-process."""
