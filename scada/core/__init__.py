"""The runtime every feature builds on: components and their lifespans, the typed context, config
base types, structured logs, the tag database component and the console helpers of the CLI."""
