"""What a run is on disk: its layout and file names (layout), atomic writes and hashing (io), its identity
and claim (identity). The sweep driver, the local runner, results, export and report all go through it."""
