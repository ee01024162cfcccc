"""Alarms: ISA-18.2 alarm engine, flood control, history, and notifications.

- ``alarm``: priorities, states, alarm snapshots; ``lifecycle``: the state machine;
- ``classes`` / ``config``: the alarm classes and ``[alarms]``;
- ``sources``: condition tags → conditions; ``conditions``: delay-on/off;
- ``engine``: the engine (Python API for the HMI, OPC UA and the CLI); ``store``: the database;
- ``component``: the runtime component (context key ``ALARMS``); ``cli``: ``scada alarms``;
- ``notify``: routing (``notifier``) and delivery (``delivery``, ``channels``) of messages
  (e-mail, webhook, SMS).

Import the modules themselves (``from scada.alarms.engine import AlarmEngine``): this package
does not import them eagerly, so that ``scada.config`` can import ``scada.alarms.config``.
"""

__all__: list[str] = []
