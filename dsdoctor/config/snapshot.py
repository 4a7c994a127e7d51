"""Where the snapshot of DeepSpeed's config catalogue and optimizer table is kept (read when
deepspeed is not importable; written by config/catalogue.py: dump_snapshot)."""
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("catalogue_snapshot.json")
