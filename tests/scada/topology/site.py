"""A small site with a meter tree for the topology tests.

::

    U (utility, read by hand, 400 kW)
    ├── S1 (floor 1 feeder, polled)
    │   ├── E1 (R1, 32 m²)   ├── E2 (R2, 45.5 m²)   └── C1 (common area)
    └── S2 (floor 2 feeder, polled)
        ├── E3 (R3, 24.5 m²)  ├── E4 (R4, 32 m²)    └── E5 (R5, no area)
    W1: an old water meter of R1, read by hand
    V:  virtual, S1 + S2 (the feeders together)
"""

from __future__ import annotations

SITE = """
[site]
id = "topo"
name = "Topology"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B"
name = "B"

[[floors]]
id = "F1"
building = "B"
level = 1
name = "F1"

[[floors]]
id = "F2"
building = "B"
level = 2
name = "F2"

[[rooms]]
id = "R1"
floor = "F1"
name = "R1"
area_m2 = "32"

[[rooms]]
id = "R2"
floor = "F1"
name = "R2"
area_m2 = "45.5"

[[rooms]]
id = "R3"
floor = "F2"
name = "R3"
area_m2 = "24.5"

[[rooms]]
id = "R4"
floor = "F2"
name = "R4"
area_m2 = "32"

[[rooms]]
id = "R5"
floor = "F2"
name = "R5"

[[meters]]
id = "U"
kind = "electricity"
role = "utility"
building = "B"
manual = true
max_power_kw = "400"

[[meters]]
id = "S1"
kind = "electricity"
role = "common"
building = "B"
profile = "acrel-adf400l"
link = "gw"
unit_id = 10
circuit = 1
parent = "U"

[[meters]]
id = "S2"
kind = "electricity"
role = "common"
building = "B"
profile = "acrel-adf400l"
link = "gw"
unit_id = 10
circuit = 2
parent = "U"

[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
parent = "S1"
max_power_kw = "10"

[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2
parent = "S1"
max_power_kw = "10"

[[meters]]
id = "C1"
kind = "electricity"
role = "common"
building = "B"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 6
parent = "S1"

[[meters]]
id = "E3"
kind = "electricity"
room = "R3"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 3
parent = "S2"

[[meters]]
id = "E4"
kind = "electricity"
room = "R4"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 4
parent = "S2"

[[meters]]
id = "E5"
kind = "electricity"
room = "R5"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 5
parent = "S2"

[[meters]]
id = "W1"
kind = "water"
room = "R1"
manual = true
max_power_kw = "2"

[[meters]]
id = "V"
kind = "electricity"
role = "virtual"
building = "B"
formula = "S1 + S2"
"""
