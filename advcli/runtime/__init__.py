"""Runtime support: how advcli runs on one or many processes and devices."""
