"""The site simulator: serves the registry's meters for ``scada demo``, and ``scada simulate``."""
