// What the console reads from the hub, in one place (each feature's own JSON API; no server
// composes a screen). Every call here goes through api(): CSRF, 401 -> sign-in.
import { api } from "../lib/api.js";

const enc = encodeURIComponent;

export const myAgent = async (ext) =>
  ((await api("GET", "/api/v1/agents")).items || []).find((a) => a.extension === ext) || null;

export const queues = async () => (await api("GET", "/api/v1/queues")).items || [];

export const agentAction = (ext, action, body = {}) =>
  api("POST", `/api/v1/agents/${enc(ext)}/${action}`, body);

export const softphoneConfig = () => api("GET", "/api/v1/softphone");

export const waitingCalls = async () =>
  (await api("GET", "/api/v1/calls?status=queued&status=ringing&limit=50")).items || [];

export const call = (id) => api("GET", `/api/v1/calls/${enc(id)}`);

// Earlier calls of a number: the calls API filters by caller number (ani).
export const callsOf = async (ani) =>
  (await api("GET", `/api/v1/calls?ani=${enc(ani)}&limit=20`)).items || [];

export const incidentsOf = async (phone) =>
  (await api("GET", `/api/v1/incidents?reporter_phone=${enc(phone)}&limit=20`)).items || [];

export const callbacks = async () =>
  (await api("GET", "/api/v1/callbacks?status=pending&status=claimed&status=calling&limit=50"))
    .items || [];

export const dialCallback = (id) => api("POST", `/api/v1/callbacks/${id}/dial`, {});
export const completeCallback = (id, note, outcome) =>
  api("POST", `/api/v1/callbacks/${id}/complete`, { note, ...(outcome ? { outcome } : {}) });

export const handoffs = async () => (await api("GET", "/api/v1/chats/handoffs")).items || [];
export const handoffAction = (id, action, text) =>
  api("POST", `/api/v1/chats/handoffs/${id}/${action}`, text ? { text } : {});

export const conference = (callId, target) =>
  api("POST", `/api/v1/calls/${enc(callId)}/conference`, { target });

export const categories = async () => (await api("GET", "/api/v1/categories")).items || [];
export const areas = async (q) =>
  (await api("GET", `/api/v1/areas?q=${enc(q)}&limit=12`)).items || [];

export const incident = (code) => api("GET", `/api/v1/incidents/${enc(code)}`);
export const patchIncident = (code, body) => api("PATCH", `/api/v1/incidents/${enc(code)}`, body);
export const transition = (code, action, note = "") =>
  api("POST", `/api/v1/incidents/${enc(code)}/transitions`, { action, note });
export const createIncident = (body, key) =>
  api("POST", "/api/v1/incidents", body, { headers: { "Idempotency-Key": key } });
export const mergeInto = (code, primary) =>
  api("POST", `/api/v1/incidents/${enc(code)}/merge`, { primary });

// Open incidents of the same group recent enough to be the same event (the core's own
// duplicate rule, RP-8: same group, within the radius, within the window); the distance is
// measured here because the list API filters by group and time, not by place.
export async function nearby({ group, lat, lon, radiusM, windowMin }) {
  if (!group || lat == null) return [];
  const since = new Date(Date.now() - windowMin * 60_000).toISOString();
  const url = `/api/v1/incidents?group=${enc(group)}&phase=open&phase=active&since=${enc(since)}&limit=100`;
  const items = (await api("GET", url)).items || [];
  return items
    .filter((i) => i.location && i.location.lat != null)
    .map((i) => ({ ...i, distance_m: distanceM(lat, lon, i.location.lat, i.location.lon) }))
    .filter((i) => i.distance_m <= radiusM)
    .sort((a, b) => a.distance_m - b.distance_m);
}

export function distanceM(lat1, lon1, lat2, lon2) {
  const r = (d) => (d * Math.PI) / 180;
  const a =
    Math.sin(r(lat2 - lat1) / 2) ** 2 +
    Math.cos(r(lat1)) * Math.cos(r(lat2)) * Math.sin(r(lon2 - lon1) / 2) ** 2;
  return 2 * 6_371_000 * Math.asin(Math.min(1, Math.sqrt(a)));
}
