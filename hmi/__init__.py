"""The web HMI and the JSON API (aiohttp, jinja2, WebSocket)."""
