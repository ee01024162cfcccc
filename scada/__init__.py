"""The prepaid-metering SCADA application: config, runtime, database, prepaid engine, alarms."""

__version__ = "0.1.0"
