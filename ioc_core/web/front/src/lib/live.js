// The live feed (/api/v1/live): one WebSocket per page, resumed from the last cursor after a
// reconnect. When the hub says `resync` (we were away too long, or too slow), the screen
// reloads its state over REST: it never shows a figure that silently missed an event.
export class LiveFeed {
  constructor({ onEvent, onResync, onStatus }) {
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus || (() => {});
    this.cursor = null;
    this.delay = 500;
    this.closed = false;
    this.ws = null;
  }

  start() {
    this.closed = false;
    this._connect();
    return this;
  }

  stop() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }

  _connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const after = this.cursor ? `?after=${encodeURIComponent(this.cursor)}` : "";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/live${after}`);
    this.ws = ws;
    this.onStatus("connecting");
    let first = !this.cursor;
    ws.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.delay = 500;
      this.onStatus("live");
      if (data.type === "hello") {
        if (first) {
          // First contact: the feed is open before the state is read, so nothing falls
          // between the two.
          if (data.cursor) this.cursor = data.cursor;
          first = false;
          this.onResync();
        }
      } else if (data.type === "event") {
        this.cursor = data.cursor;
        this.onEvent(data.event);
      } else if (data.type === "resync") {
        if (data.cursor) this.cursor = data.cursor;
        this.onResync();
      }
    };
    ws.onclose = (ev) => {
      this.ws = null;
      if (this.closed) return;
      // 4401: the sign-in ended while the feed was open (ioc_core/web/live.py).
      this.onStatus(ev.code === 4401 ? "signed-out" : "down");
      setTimeout(() => this._connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }
}

// Calls `fn` at most once per `ms`, trailing: bursts of events cost one reload.
export function coalesce(fn, ms = 150) {
  let timer = null;
  let again = false;
  let running = false;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        timer = setTimeout(run, ms);
      }
    }
  };
  return () => {
    if (!timer) timer = setTimeout(run, ms);
  };
}
