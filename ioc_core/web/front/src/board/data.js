// The board's state: each REST resource, reloaded when the live feed says it changed
// (coalesced: a burst of events costs one request per resource), everything on a resync, and
// on a timer as a safety net (every 5 s while the feed is down, every 15 s while it is live).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../lib/api.js";
import { LiveFeed, coalesce } from "../lib/live.js";
import { localMidnight, resourcesFor } from "./figures.js";

const CALL_BACK_OPEN = ["pending", "calling", "claimed", "failed"].map((s) => `status=${s}`).join("&");

export const LOADERS = {
  queues: () => api("GET", "/api/v1/queues"),
  calls: () => api("GET", "/api/v1/calls?status=queued&status=ringing&status=connected&limit=500"),
  agents: () => api("GET", "/api/v1/agents"),
  callbacks: () => api("GET", `/api/v1/callbacks?${CALL_BACK_OPEN}&limit=200`),
  incidents: () =>
    api("GET", `/api/v1/incidents?since=${encodeURIComponent(localMidnight())}&limit=500&order=desc`),
  handoffs: () => api("GET", "/api/v1/chats/handoffs"),
};

const POLL_DOWN_MS = 5000;
const POLL_LIVE_MS = 15000;

export function useBoardData() {
  // name -> {body, at (browser ms when received)}
  const [data, setData] = useState({});
  const [errors, setErrors] = useState({});
  const [status, setStatus] = useState("connecting");
  const statusRef = useRef(status);
  const lastFull = useRef(0);

  const reload = useMemo(() => {
    const one = {};
    for (const [name, load] of Object.entries(LOADERS)) {
      one[name] = coalesce(async () => {
        try {
          const body = await load();
          const at = Date.now();
          setData((d) => ({ ...d, [name]: { body, at } }));
          setErrors((e) => (e[name] ? { ...e, [name]: null } : e));
        } catch (err) {
          setErrors((e) => ({ ...e, [name]: err }));
        }
      }, 100);
    }
    const all = () => {
      lastFull.current = Date.now();
      for (const fn of Object.values(one)) fn();
    };
    return { one, all };
  }, []);

  useEffect(() => {
    reload.all();
    const feed = new LiveFeed({
      onEvent: (event) => {
        for (const name of resourcesFor(event && event.name)) reload.one[name]();
      },
      onResync: reload.all,
      onStatus: (s) => {
        statusRef.current = s;
        setStatus(s);
      },
    }).start();
    const timer = setInterval(() => {
      const every = statusRef.current === "live" ? POLL_LIVE_MS : POLL_DOWN_MS;
      if (Date.now() - lastFull.current >= every - 250) reload.all();
    }, 1000);
    return () => {
      clearInterval(timer);
      feed.stop();
    };
  }, [reload]);

  return { data, errors, status, reload };
}
