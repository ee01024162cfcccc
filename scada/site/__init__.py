"""The site: the asset registry (buildings, floors, rooms, meters), the site import (TOML/CSV),
device profile names, and ``scada import-site``."""
