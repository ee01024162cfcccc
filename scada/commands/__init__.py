"""The one command path for relays and valves: queued, authorised, audited, confirmed by read-back."""
