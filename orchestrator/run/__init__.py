"""What a run is: one object, `Run` (rundir: its location, local or shared storage, its identity and claim,
its records and every write into it), its file names (layout), atomic writes and hashing (io)."""
