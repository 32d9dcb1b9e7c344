"""One module per command (``train`` holds ``train`` and ``robust-train``); each has ``register(app)``."""
