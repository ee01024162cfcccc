"""Users and access: accounts with roles (``auth``), web sessions, API tokens, the audit log,
the login rate limiter shared by the HMI and OPC UA, and ``scada user``."""
