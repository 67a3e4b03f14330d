"""Files, safely: atomic writes and append-as-you-go JSONL (``fileio``), YAML configs as dataclasses (``config``), the
formats every file declares (``formats``), destinations checked before any work (``outputs``) and one writer per
folder (``locking``)."""
