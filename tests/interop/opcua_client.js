// A node-opcua client driven line by line, for the interoperability tests of our OPC UA server.
//
// stdin:  one JSON command per line: {"id": 1, "op": "connect", ...}
// stdout: one JSON object per line: {"id": 1, "ok": true, "result": ...}
//         or {"id": 1, "ok": false, "error": "...", "status": "BadUserAccessDenied"};
//         data changes of subscriptions arrive as {"event": "change", ...} at any time.
// node-opcua prints a NODE-OPCUA-W27 warning at load: readers skip lines that are not JSON.
//
// Ops: connect, client_certificate, browse, tree, translate, read, read_attributes, subscribe,
// subscribe_many, call, write, history_raw, history_processed, subscribe_events,
// condition_refresh, acknowledge, confirm, close. Node ids are strings
// ("ns=2;s=E-B1-101.energy_total"); ByteStrings are hex; events arrive as {"event": "ev", ...}.
"use strict";

const readline = require("readline");
const {
    OPCUAClient,
    MessageSecurityMode,
    SecurityPolicy,
    AttributeIds,
    DataType,
    ClientSubscription,
    ClientMonitoredItem,
    ClientMonitoredItemGroup,
    TimestampsToReturn,
    BrowseDirection,
    makeBrowsePath,
    NodeClass,
    UserTokenType,
    HistoryReadRequest,
    ReadRawModifiedDetails,
    ReadProcessedDetails,
    constructEventFilter,
    callConditionRefresh,
    acknowledgeCondition,
    confirmCondition,
    coerceLocalizedText,
    resolveNodeId,
} = require("node-opcua-client");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");

let client = null;
let session = null;
const subscriptions = [];

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function statusName(sc) {
    return sc && sc.name ? sc.name : String(sc);
}

function plain(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "bigint") return Number(value);
    if (Array.isArray(value)) return value.map(plain);
    if (value instanceof Date) return value.toISOString();
    if (typeof value === "object") {
        if (typeof value.toJSON === "function") return value.toJSON();
        if (value.text !== undefined) return value.text;
        return String(value);
    }
    return value;
}

function dataValue(dv) {
    return {
        value: dv.value ? plain(dv.value.value) : null,
        dataType: dv.value ? DataType[dv.value.dataType] : null,
        status: statusName(dv.statusCode),
        sourceTimestamp: dv.sourceTimestamp ? dv.sourceTimestamp.toISOString() : null,
        serverTimestamp: dv.serverTimestamp ? dv.serverTimestamp.toISOString() : null,
    };
}

// a Variant's value as JSON: NodeIds as strings, ByteStrings as hex, texts as their text
function variantValue(v) {
    if (!v || v.value === null || v.value === undefined) return null;
    if (v.dataType === DataType.ByteString) return Buffer.from(v.value).toString("hex");
    if (v.dataType === DataType.NodeId || v.dataType === DataType.ExpandedNodeId) return v.value.toString();
    if (v.dataType === DataType.LocalizedText) return v.value.text === undefined ? null : v.value.text;
    if (v.dataType === DataType.StatusCode) return statusName(v.value);
    if (v.dataType === DataType.QualifiedName) return v.value.toString();
    return plain(v.value);
}

// one history value as [sourceTimestamp, value, status code (number), serverTimestamp]
function historyValue(dv) {
    return [
        dv.sourceTimestamp ? dv.sourceTimestamp.toISOString() : null,
        dv.value ? plain(dv.value.value) : null,
        dv.statusCode ? dv.statusCode.value : 0,
        dv.serverTimestamp ? dv.serverTimestamp.toISOString() : null,
    ];
}

// HistoryRead of one node, following continuation points (unless cmd.maxPages stops it); with
// cmd.countOnly the values are counted, not returned (for large reads)
async function historyPages(cmd, details) {
    const values = [];
    let count = 0;
    let first = null;
    let last = null;
    let cp = null;
    let pages = 0;
    const started = Date.now();
    for (;;) {
        const response = await session.historyRead(
            new HistoryReadRequest({
                historyReadDetails: details,
                timestampsToReturn: TimestampsToReturn[cmd.timestamps || "Both"],
                releaseContinuationPoints: false,
                nodesToRead: [{ nodeId: cmd.nodeId, continuationPoint: cp }],
            })
        );
        const r = response.results[0];
        pages += 1;
        if (r.statusCode.isNotGood()) {
            return { status: statusName(r.statusCode), values, count, pages };
        }
        for (const dv of (r.historyData && r.historyData.dataValues) || []) {
            const v = historyValue(dv);
            count += 1;
            if (first === null) first = v;
            last = v;
            if (!cmd.countOnly) values.push(v);
        }
        cp = r.continuationPoint && r.continuationPoint.length ? r.continuationPoint : null;
        if (!cp || (cmd.maxPages && pages >= cmd.maxPages)) break;
    }
    return { status: "Good", values, count, pages, first, last, more: cp !== null, ms: Date.now() - started };
}

async function certificateManager(pkiDir) {
    if (!pkiDir) throw new Error("pkiDir is required (the client's own certificate store)");
    const manager = new OPCUACertificateManager({
        rootFolder: pkiDir,
        automaticallyAcceptUnknownCertificate: true, // the client trusts our test server
    });
    await manager.initialize();
    return manager;
}

function makeClient(cmd, manager) {
    return OPCUAClient.create({
        applicationName: cmd.applicationName || "scada-interop-test",
        applicationUri: cmd.applicationUri || "urn:scada-interop-test",
        clientCertificateManager: manager,
        securityMode: MessageSecurityMode[cmd.securityMode || "None"],
        securityPolicy: SecurityPolicy[cmd.securityPolicy || "None"],
        endpointMustExist: false,
        requestedSessionTimeout: 60000,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    });
}

const ops = {
    async client_certificate(cmd) {
        // the certificate this client presents, created on first use (to trust it in the server)
        const manager = await certificateManager(cmd.pkiDir);
        const c = makeClient(cmd, manager);
        await c.createDefaultCertificate();
        return { certificateFile: c.certificateFile };
    },

    async connect(cmd) {
        const manager = await certificateManager(cmd.pkiDir);
        client = makeClient(cmd, manager);
        await client.connect(cmd.endpoint);
        const identity = cmd.user
            ? { type: UserTokenType.UserName, userName: cmd.user, password: cmd.password }
            : { type: UserTokenType.Anonymous };
        try {
            session = await client.createSession(identity);
        } catch (err) {
            await client.disconnect();
            client = null;
            throw err;
        }
        return { sessionId: session.sessionId.toString(), securityMode: cmd.securityMode || "None" };
    },

    async browse(cmd) {
        const result = await session.browse({
            nodeId: cmd.nodeId,
            browseDirection: BrowseDirection.Forward,
            referenceTypeId: cmd.referenceTypeId || "HierarchicalReferences",
            includeSubtypes: true,
            resultMask: 63,
        });
        return {
            status: statusName(result.statusCode),
            references: (result.references || []).map((r) => ({
                browseName: r.browseName.toString(),
                nodeId: r.nodeId.toString(),
                nodeClass: NodeClass[r.nodeClass],
                typeDefinition: r.typeDefinition.toString(),
            })),
        };
    },

    async tree(cmd) {
        // every node below cmd.nodeId (hierarchical references), with its browse path
        const out = [];
        const queue = [{ nodeId: cmd.nodeId, path: cmd.path || "" }];
        while (queue.length) {
            const batch = queue.splice(0, 200);
            const results = await session.browse(
                batch.map((b) => ({
                    nodeId: b.nodeId,
                    browseDirection: BrowseDirection.Forward,
                    referenceTypeId: "HierarchicalReferences",
                    includeSubtypes: true,
                    resultMask: 63,
                }))
            );
            results.forEach((res, i) => {
                for (const r of res.references || []) {
                    const node = {
                        path: batch[i].path + "/" + r.browseName.name,
                        browseName: r.browseName.toString(),
                        nodeId: r.nodeId.toString(),
                        nodeClass: NodeClass[r.nodeClass],
                        typeDefinition: r.typeDefinition.toString(),
                    };
                    out.push(node);
                    if (r.nodeClass === NodeClass.Object || r.nodeClass === NodeClass.Variable) {
                        queue.push({ nodeId: node.nodeId, path: node.path });
                    }
                }
            });
        }
        return out;
    },

    async translate(cmd) {
        const result = await session.translateBrowsePath(makeBrowsePath("RootFolder", cmd.path));
        return {
            status: statusName(result.statusCode),
            nodeId: result.targets && result.targets.length ? result.targets[0].targetId.toString() : null,
        };
    },

    async read(cmd) {
        const dvs = await session.read(
            cmd.nodes.map((n) => ({ nodeId: n, attributeId: AttributeIds.Value })),
            0
        );
        return dvs.map(dataValue);
    },

    async read_attributes(cmd) {
        const dvs = await session.read(cmd.attributes.map((a) => ({ nodeId: cmd.nodeId, attributeId: AttributeIds[a] })));
        const out = {};
        cmd.attributes.forEach((a, i) => {
            out[a] = dataValue(dvs[i]);
        });
        return out;
    },

    async subscribe(cmd) {
        const subscription = ClientSubscription.create(session, {
            requestedPublishingInterval: cmd.publishingInterval || 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 0,
            publishingEnabled: true,
            priority: 1,
        });
        const id = subscriptions.length;
        subscriptions.push(subscription);
        await new Promise((resolve, reject) => {
            subscription.once("started", resolve);
            subscription.once("internal_error", reject);
        });
        for (const nodeId of cmd.nodes) {
            const item = ClientMonitoredItem.create(
                subscription,
                { nodeId, attributeId: AttributeIds.Value },
                { samplingInterval: 0, discardOldest: true, queueSize: 100 },
                TimestampsToReturn.Both
            );
            item.on("changed", (dv) => emit({ event: "change", sub: id, nodeId, received: new Date().toISOString(), ...dataValue(dv) }));
            await new Promise((resolve, reject) => {
                item.once("initialized", resolve);
                item.once("err", (msg) => reject(new Error(String(msg))));
            });
        }
        return { sub: id };
    },

    async subscribe_many(cmd) {
        // many items in one CreateMonitoredItems call; changes arrive as compact events
        // {"event": "c", "i": index, "v": value, "s": status, "r": received epoch ms}
        const subscription = ClientSubscription.create(session, {
            requestedPublishingInterval: cmd.publishingInterval || 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 0,
            publishingEnabled: true,
            priority: 1,
        });
        const id = subscriptions.length;
        subscriptions.push(subscription);
        await new Promise((resolve, reject) => {
            subscription.once("started", resolve);
            subscription.once("internal_error", reject);
        });
        const group = ClientMonitoredItemGroup.create(
            subscription,
            cmd.nodes.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
            { samplingInterval: 0, discardOldest: true, queueSize: 1000 },
            TimestampsToReturn.Both
        );
        group.on("changed", (_item, dv, index) => {
            const v = dv.value ? plain(dv.value.value) : null;
            process.stdout.write(JSON.stringify({ event: "c", sub: id, i: index, v, s: statusName(dv.statusCode), r: Date.now() }) + "\n");
        });
        await new Promise((resolve, reject) => {
            group.once("initialized", resolve);
            group.once("err", (msg) => reject(new Error(String(msg))));
        });
        return { sub: id, items: cmd.nodes.length };
    },

    async call(cmd) {
        const result = await session.call({
            objectId: cmd.objectId,
            methodId: cmd.methodId,
            inputArguments: (cmd.args || []).map((a) => {
                let value = a.value;
                if (a.dataType === "ByteString") value = Buffer.from(a.value, "hex");
                if (a.dataType === "LocalizedText") value = coerceLocalizedText(a.value);
                return { dataType: DataType[a.dataType], value };
            }),
        });
        return {
            status: statusName(result.statusCode),
            outputs: (result.outputArguments || []).map((v) => plain(v.value)),
            inputArgumentResults: (result.inputArgumentResults || []).map(statusName),
        };
    },

    async history_raw(cmd) {
        const details = new ReadRawModifiedDetails({
            isReadModified: false,
            startTime: new Date(cmd.start),
            endTime: new Date(cmd.end),
            numValuesPerNode: cmd.numValues || 0,
            returnBounds: Boolean(cmd.returnBounds),
        });
        return historyPages(cmd, details);
    },

    async history_processed(cmd) {
        const details = new ReadProcessedDetails({
            startTime: new Date(cmd.start),
            endTime: new Date(cmd.end),
            processingInterval: cmd.intervalMs,
            aggregateType: [resolveNodeId(cmd.aggregate)],
            aggregateConfiguration: { useServerCapabilitiesDefaults: true },
        });
        return historyPages(cmd, details);
    },

    async subscribe_events(cmd) {
        // an event monitored item at cmd.nodeId selecting cmd.fields ("AckedState.Id", "ConditionId" …);
        // notifications arrive as {"event": "ev", "sub": id, "fields": {name: value}, "received": epoch ms}
        const subscription = ClientSubscription.create(session, {
            requestedPublishingInterval: cmd.publishingInterval || 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 0,
            publishingEnabled: true,
            priority: 1,
        });
        const id = subscriptions.length;
        subscriptions.push(subscription);
        await new Promise((resolve, reject) => {
            subscription.once("started", resolve);
            subscription.once("internal_error", reject);
        });
        const fields = cmd.fields;
        const item = ClientMonitoredItem.create(
            subscription,
            { nodeId: cmd.nodeId, attributeId: AttributeIds.EventNotifier },
            { samplingInterval: 0, discardOldest: true, queueSize: 1000, filter: constructEventFilter(fields) },
            TimestampsToReturn.Neither
        );
        item.on("changed", (variants) => {
            const out = {};
            fields.forEach((name, i) => {
                out[name] = variantValue(variants[i]);
            });
            emit({ event: "ev", sub: id, nodeId: cmd.nodeId, received: Date.now(), fields: out });
        });
        await new Promise((resolve, reject) => {
            item.once("initialized", resolve);
            item.once("err", (msg) => reject(new Error(String(msg))));
        });
        return { sub: id, subscriptionId: subscription.subscriptionId };
    },

    async condition_refresh(cmd) {
        const status = await callConditionRefresh(session, subscriptions[cmd.sub].subscriptionId);
        return { status: statusName(status) };
    },

    async acknowledge(cmd) {
        // node-opcua's own A&C helper: finds the method on the condition or its type
        const status = await acknowledgeCondition(session, cmd.conditionId, Buffer.from(cmd.eventId, "hex"), cmd.comment || "");
        return { status: statusName(status) };
    },

    async confirm(cmd) {
        const status = await confirmCondition(session, cmd.conditionId, Buffer.from(cmd.eventId, "hex"), cmd.comment || "");
        return { status: statusName(status) };
    },

    async write(cmd) {
        const status = await session.write({
            nodeId: cmd.nodeId,
            attributeId: AttributeIds.Value,
            value: { value: { dataType: DataType[cmd.dataType], value: cmd.value } },
        });
        return { status: statusName(status) };
    },

    async close() {
        for (const s of subscriptions) {
            await s.terminate().catch(() => {});
        }
        if (session) await session.close().catch(() => {});
        if (client) await client.disconnect();
        session = null;
        client = null;
        return {};
    },
};

async function handle(line) {
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (err) {
        emit({ ok: false, error: "not JSON: " + line });
        return;
    }
    const op = ops[cmd.op];
    if (!op) {
        emit({ id: cmd.id, ok: false, error: "unknown op " + cmd.op });
        return;
    }
    try {
        emit({ id: cmd.id, ok: true, result: await op(cmd) });
    } catch (err) {
        const status = err && err.response && err.response.responseHeader ? statusName(err.response.responseHeader.serviceResult) : null;
        emit({ id: cmd.id, ok: false, error: String(err && err.message ? err.message : err), status });
    }
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on("line", (line) => {
    if (line.trim()) chain = chain.then(() => handle(line));
});
rl.on("close", () => {
    chain.then(() => ops.close().catch(() => {})).then(() => process.exit(0));
});
