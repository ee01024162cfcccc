from scada.cli.main import entry

entry()
