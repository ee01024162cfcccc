"""MQTT gateways: meters whose readings a gateway publishes to a broker, as Sparkplug B or as JSON
on topics described by templates. The server subscribes (one connection per broker), feeds the
meters' tags with the readings' own times (a gateway's replay after an outage fills history
without hiding the newest value), marks a dead gateway's meters bad, and sends relay commands
back through the broker."""
