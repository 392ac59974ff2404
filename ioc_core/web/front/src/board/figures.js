// The board's figures as pure functions over what the REST API returned: no fetching, no DOM.
import TH from "./thresholds.json";

export const THRESHOLDS = TH;
const WAITING = new Set(["queued", "ringing"]);

// The figures' tones; a tone is always shown with its word too (board.tone.*), never colour
// alone.
export function waitTone(seconds, queue) {
  const limit = waitLimit(queue);
  if (seconds >= limit) return "bad";
  if (seconds >= limit / 2) return "warn";
  return "ok";
}

export function waitLimit(queue) {
  return TH.wait_alarm_s[queue] ?? TH.wait_alarm_default_s;
}

// Service level as Asterisk defines it (screens-anchors §2): answered within T ÷ answered.
// The API also gives the stricter figure (abandons counted against); the board labels which.
export function serviceLevel(q, seconds) {
  const answered = q.answered || 0;
  const within = (q.answered_within && q.answered_within[`${seconds}s`]) || 0;
  return { within, answered, ratio: answered ? within / answered : null };
}

export function levelTone(ratio, seconds) {
  if (ratio == null) return "idle";
  const target = TH.service_level[String(seconds)];
  if (ratio >= target) return "ok";
  if (ratio >= target - TH.service_level.warn_margin) return "warn";
  return "bad";
}

// Abandon rate = abandoned ÷ calls that left the queue (answered + abandoned).
export function abandonTone(q) {
  const left = (q.answered || 0) + (q.abandoned || 0);
  if (!q.abandoned) return "ok";
  const rate = q.abandoned / left;
  if (rate >= TH.abandon_rate.bad) return "bad";
  return rate >= TH.abandon_rate.warn ? "warn" : "ok";
}

// The waiting calls of each queue with the second (browser clock) they started to wait.
// Skew-free: the hub says how long each call had waited when it answered (`wait_s`, at the
// hub's clock); the browser adds the time since it received that answer.
export function waitingByQueue(calls, fetchedAt) {
  const out = {};
  for (const c of calls || []) {
    if (!WAITING.has(c.status) || !c.queue) continue;
    const since = fetchedAt - (c.wait_s || 0) * 1000;
    (out[c.queue] ||= []).push({ ...c, since });
  }
  return out;
}

export function longestWait(waiting, now) {
  let longest = 0;
  for (const c of waiting || []) longest = Math.max(longest, (now - c.since) / 1000);
  return longest;
}

// The agent's call: the one the hub says the agent is talking on (or ringing for).
export function callsByAgent(calls) {
  const out = {};
  for (const c of calls || []) {
    if (c.agent && (c.status === "connected" || c.status === "ringing")) out[c.agent] = c;
  }
  return out;
}

// Which REST resources an event on the feed changes (reloaded, coalesced).
export function resourcesFor(name) {
  if (!name || name.startsWith("call.transcript")) return [];
  if (name.startsWith("call.")) return ["queues", "calls"];
  if (name.startsWith("agent.")) return ["agents", "queues"];
  if (name.startsWith("callback.")) return ["callbacks"];
  if (name.startsWith("incident.")) return ["incidents"];
  if (name.startsWith("chat.handoff_")) return ["handoffs"];
  return [];
}

// Local midnight in the province (Asia/Ho_Chi_Minh, UTC+7 all year): "today" for the board.
export function localMidnight(now = Date.now()) {
  const day = new Date(now + 7 * 3600_000).toISOString().slice(0, 10);
  return `${day}T00:00:00+07:00`;
}

export function incidentTone(inc) {
  if (inc.phase === "resolved" || inc.phase === "closed") return "ok";
  if (inc.track === "immediate" && !inc.agency) return "bad";
  if (inc.track === "immediate") return "warn";
  return "info";
}
