// Alarms: conditions a supervisor must see (a caller waiting too long, an emergency call-back
// nobody claimed, an immediate incident with no agency). An alarm stays listed until someone
// acknowledges it, even after its condition cleared (it is then marked as over): a caller who
// gave up after 40 s is still something the supervisor must know about. Both the raised and
// the acknowledged alarms are kept in this browser (localStorage).
import { THRESHOLDS, waitLimit } from "./figures.js";

const KEPT = "ioc.board.alarms";
const ACKED = "ioc.board.acked";
const KEEP_MS = 48 * 3600_000;

// What is alarming now: [{id, kind, params}].
export function currentAlarms({ waiting, now, callbacks, incidents }) {
  const out = [];
  for (const [queue, calls] of Object.entries(waiting || {})) {
    for (const c of calls) {
      const seconds = (now - c.since) / 1000;
      if (seconds >= waitLimit(queue)) {
        out.push({ id: `wait-${c.id}`, kind: "wait", params: { queue, service: c.service, limit: waitLimit(queue) } });
      }
    }
  }
  for (const cb of callbacks || []) {
    if (THRESHOLDS.emergency_services.includes(cb.service) && (cb.status === "pending" || cb.status === "failed")) {
      out.push({ id: `callback-${cb.id}`, kind: "callback", params: { service: cb.service, number: cb.id } });
    }
  }
  for (const inc of incidents || []) {
    const open = inc.phase === "open" || inc.phase === "active";
    if (open && inc.state !== "draft" && inc.track === "immediate" && !inc.agency) {
      out.push({ id: `incident-${inc.code}`, kind: "incident", params: { code: inc.code, title: inc.title } });
    }
  }
  return out;
}

// kept: {id: {id, kind, params, raised_at, active}} -> the same after this look.
export function merge(kept, current, now) {
  const next = {};
  const live = new Set(current.map((a) => a.id));
  for (const [id, a] of Object.entries(kept)) {
    if (live.has(id) || now - a.raised_at < KEEP_MS) next[id] = { ...a, active: live.has(id) };
  }
  for (const a of current) next[a.id] = { ...(next[a.id] || { raised_at: now }), ...a, active: true };
  return next;
}

export function visible(kept, acked) {
  return Object.values(kept)
    .filter((a) => !acked[a.id])
    .sort((x, y) => Number(y.active) - Number(x.active) || x.raised_at - y.raised_at);
}

export function load(key = KEPT) {
  try {
    return JSON.parse(localStorage.getItem(key) || "{}") || {};
  } catch {
    return {};
  }
}

export function save(kept, acked) {
  localStorage.setItem(KEPT, JSON.stringify(kept));
  localStorage.setItem(ACKED, JSON.stringify(acked));
}

export function loadAcked(now = Date.now()) {
  const acked = load(ACKED);
  for (const [id, at] of Object.entries(acked)) if (now - at > KEEP_MS) delete acked[id];
  return acked;
}
