"""MQTT gateways: Sparkplug B metric updates ingested into tags per second, one subscriber.

How it is measured: a private Mosquitto (Debian's, on a loopback port, as the test suite starts
it); a publisher in another process plays 10 Sparkplug B edge nodes of 100 meters each (its own
MQTT connections, ``protocols.mqtt.simgw.MqttWire``): births first, then DDATA at QoS 0 (as
Sparkplug publishes data), each message one meter's 8 metrics by alias (energy_total and its four
TOU registers, power, voltage, current) with incrementing ``seq``. This process runs the server's
real ``MqttLinks`` (one aiomqtt connection to the broker) and its ``TagDB`` with one subscription
(a task draining it in batches, as the historian does). The figure is metric updates written
to tags per second from the first to the last data message taken; CPU is this process's
``process_time`` over the same span, and ``updates_per_core_s`` the rate one core would take at
that CPU cost (on a shared machine the wall-clock rate is bounded by the CPU the process gets:
compare ``cpu_share``). Messages the broker dropped (publisher outpacing it) are counted.

Goal: at least 50,000 metric updates/s. Run: ``python bench/mqtt/run.py`` (``--quick``: fewer
messages). Writes ``build/bench/mqtt.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.library import load_library  # noqa: E402
from protocols.modbus.poller import DeviceSpec  # noqa: E402
from protocols.mqtt import sparkplug  # noqa: E402
from protocols.mqtt.config import MqttLinkConfig  # noqa: E402
from protocols.mqtt.links import MqttLinks  # noqa: E402
from protocols.mqtt.simgw import MqttWire  # noqa: E402
from protocols.mqtt.sparkplug import DataType, Metric  # noqa: E402
from tags import TagDB  # noqa: E402

GATEWAYS, PER_GATEWAY = 10, 100
METRICS = ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "power", "voltage", "current")
GROUP = "bench"


async def publish(port: int, messages: int) -> None:
    """The publisher process: births, then ``messages`` DDATA spread over the gateways."""
    wires = []
    now = int(time.time() * 1000)
    for g in range(GATEWAYS):
        w = MqttWire()
        await w.connect("127.0.0.1", port, f"bench-gw-{g}", keepalive=60)
        edge = f"gw-{g}"
        w.publish(sparkplug.topic(GROUP, "NBIRTH", edge), sparkplug.encode_payload([Metric(sparkplug.BDSEQ, 0, DataType.UINT64)], 0, now))
        for i in range(PER_GATEWAY):
            metrics = [Metric(name, 1000.0, DataType.DOUBLE, now, k + 1) for k, name in enumerate(METRICS)]
            w.publish(sparkplug.topic(GROUP, "DBIRTH", edge, f"m{i}"), sparkplug.encode_payload(metrics, i + 1, now))
        await w.drain()
        wires.append(w)
    seqs = [PER_GATEWAY % 256] * GATEWAYS
    # each meter's DDATA encoded once without its seq; the seq (field 3) is appended per message
    # (protobuf takes fields in any order), so the publisher is not what is measured
    ts = int(time.time() * 1000)
    base = {
        (g, i): sparkplug.encode_payload([Metric(None, 1000.0 + i, DataType.DOUBLE, ts, k + 1) for k in range(len(METRICS))], None, ts)
        for g in range(GATEWAYS) for i in range(PER_GATEWAY)
    }
    topics = {(g, i): sparkplug.topic(GROUP, "DDATA", f"gw-{g}", f"m{i}") for g in range(GATEWAYS) for i in range(PER_GATEWAY)}
    await asyncio.sleep(1.0)
    print("born", flush=True)
    for n in range(messages):
        g, i = n % GATEWAYS, (n // GATEWAYS) % PER_GATEWAY
        seqs[g] = (seqs[g] + 1) % 256
        seq = bytes([seqs[g]]) if seqs[g] < 128 else bytes([seqs[g] & 0x7F | 0x80, 1])
        wires[g].publish(topics[(g, i)], base[(g, i)] + b"\x18" + seq)
        if n % 500 == 499:
            await wires[g].drain()
    for w in wires:
        await w.drain()
    print("done", flush=True)
    await asyncio.sleep(3.0)
    for w in wires:
        await w.close()


async def measure(port: int, messages: int) -> dict[str, object]:
    db = TagDB()
    configs = [
        MqttLinkConfig.model_validate({"name": f"gw-{g}", "kind": "mqtt", "host": "127.0.0.1", "port": port, "group_id": GROUP})
        for g in range(GATEWAYS)
    ]
    links = MqttLinks(db, configs, load_library())
    links.set_devices(DeviceSpec(f"E-{g}-{i}", "mqtt-electricity", f"gw-{g}", 0, address=f"m{i}")
                      for g in range(GATEWAYS) for i in range(PER_GATEWAY))
    sub = db.subscribe(include_reported=True, include_late=True, maxsize=200_000, name="bench")
    taken = 0

    async def consume() -> None:
        nonlocal taken
        while True:
            taken += len(await sub.get_batch(10_000))

    run = asyncio.create_task(links.run(), name="mqtt")
    consumer = asyncio.create_task(consume(), name="consumer")
    while not all(b.connected for b in links.brokers):
        await asyncio.sleep(0.05)
    proc = subprocess.Popen([sys.executable, __file__, "--publish", str(port), "--messages", str(messages)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, proc.stdout.readline)
    assert line.strip() == "born", line
    await asyncio.sleep(0.5)
    births = links.updates
    target = births + messages * len(METRICS)
    t0 = c0 = None
    first_updates = births
    deadline = time.monotonic() + 600
    last, last_change = links.updates, time.monotonic()
    while links.updates < target and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        if t0 is None and links.updates > births:
            t0, c0, first_updates = time.perf_counter(), time.process_time(), births
        if links.updates != last:
            last, last_change = links.updates, time.monotonic()
        elif t0 is not None and time.monotonic() - last_change > 3.0:
            break  # the rest was dropped by the broker
    t1, c1 = time.perf_counter(), time.process_time()
    await loop.run_in_executor(None, proc.wait)
    run.cancel()
    consumer.cancel()
    for t in (run, consumer):
        try:
            await t
        except asyncio.CancelledError:
            pass
    sub.close()
    assert t0 is not None and c0 is not None
    updates = links.updates - first_updates
    elapsed = t1 - t0
    return {
        "messages_sent": messages,
        "metric_updates": updates,
        "dropped_messages": messages - updates // len(METRICS),
        "elapsed_s": round(elapsed, 3),
        "updates_per_s": round(updates / elapsed),
        "messages_per_s": round(updates / len(METRICS) / elapsed),
        "cpu_share": round((c1 - c0) / elapsed, 3),
        "cpu_us_per_update": round((c1 - c0) / max(updates, 1) * 1e6, 2),
        # what one core would take at that CPU cost (the machine may be shared: see cpu_share)
        "updates_per_core_s": round(updates / max(c1 - c0, 1e-9)),
        "subscriber_delivered": taken,
        "seq_gaps": sum(g.seq_gaps for g in links.gateways.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--publish", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=60_000)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish, args.messages))
        return
    from tests.services import MosquittoServer, build_dir

    messages = 15_000 if args.quick else args.messages
    broker = MosquittoServer()
    broker.start()
    try:
        result = asyncio.run(measure(broker.port, messages))
    finally:
        broker.stop()
    result = {
        "bench": "mqtt", "goal_updates_per_s": 50_000, "gateways": GATEWAYS, "meters": GATEWAYS * PER_GATEWAY,
        "metrics_per_message": len(METRICS), "python": platform.python_version(), "cpus": os.cpu_count(), **result,
    }
    print(f"MQTT Sparkplug B ingest, one subscriber: {result['updates_per_s']:,} metric updates/s "
          f"({result['messages_per_s']:,} messages/s of {len(METRICS)} metrics), "
          f"{result['cpu_us_per_update']} µs CPU per update ({result['updates_per_core_s']:,}/s per core), "
          f"{result['cpu_share']:.0%} of a core; "
          f"dropped {result['dropped_messages']} of {messages} messages; goal ≥ 50,000 updates/s")
    out = build_dir() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mqtt.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
