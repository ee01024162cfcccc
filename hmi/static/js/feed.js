// The WebSocket feed client: subscribes to a view, reconnects with backoff, and resyncs from
// the snapshot the server sends after every (re)subscription.
import { t, setText } from "./common.js";

export class Feed {
  constructor(subscription, { onSnapshot, onUpdate, onError } = {}) {
    this.subscription = subscription;
    this.onSnapshot = onSnapshot || (() => {});
    this.onUpdate = onUpdate || (() => {});
    this.onError = onError || (() => {});
    this.backoff = 500;
    this.ws = null;
    this.closed = false;
    this.status = document.getElementById("live-status");
    this.lastSeq = 0;
    window.addEventListener("pagehide", () => this.close());
    this.connect();
  }

  setStatus(state) {
    if (!this.status) return;
    this.status.dataset.state = state;
    setText(this.status, t(`js.live.${state}`));
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    this.setStatus("connecting");
    ws.addEventListener("open", () => {
      this.backoff = 500;
      ws.send(JSON.stringify({ type: "subscribe", ...this.subscription }));
    });
    ws.addEventListener("message", (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "snapshot") {
        this.lastSeq = msg.seq;
        this.setStatus("live");
        this.onSnapshot(msg);
      } else if (msg.type === "update") {
        this.lastSeq = msg.seq;
        this.onUpdate(msg);
      } else if (msg.type === "error") {
        this.onError(msg);
      }
    });
    ws.addEventListener("close", (event) => {
      if (this.closed) return;
      if (event.code === 4401) {
        // the session ended: the login page takes over
        this.setStatus("signed_out");
        window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
        return;
      }
      this.setStatus("reconnecting");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    });
  }

  /** Change the view (the server answers with a new snapshot). */
  subscribe(subscription) {
    this.subscription = subscription;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "subscribe", ...subscription }));
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
