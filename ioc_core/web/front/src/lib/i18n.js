// Vietnamese first, English second: every text a screen shows comes from locales/*.json.
import { useEffect, useState } from "preact/hooks";
import vi from "../../locales/vi.json";
import en from "../../locales/en.json";

const TABLES = { vi, en };
const KEY = "ioc.lang";
const listeners = new Set();
let current = (typeof localStorage !== "undefined" && localStorage.getItem(KEY)) || "vi";
if (!TABLES[current]) current = "vi";

export function lang() {
  return current;
}

export function setLang(value) {
  current = TABLES[value] ? value : "vi";
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current;
  for (const fn of listeners) fn(current);
}

function lookup(table, key) {
  return key.split(".").reduce((node, part) => (node == null ? undefined : node[part]), table);
}

// t("login.throttled", {seconds: 30}); a missing key shows itself (visible in tests), and a
// key missing in English falls back to Vietnamese.
export function t(key, params = {}) {
  const text = lookup(TABLES[current], key) ?? lookup(vi, key) ?? key;
  return String(text).replace(/\{(\w+)\}/g, (m, name) => (name in params ? params[name] : m));
}

// Re-render a component when the language changes.
export function useLang() {
  const [value, set] = useState(current);
  useEffect(() => {
    listeners.add(set);
    return () => listeners.delete(set);
  }, []);
  return value;
}

const formatters = {};
export function formatTime(iso, withDate = false) {
  if (!iso) return "";
  const key = `${current}:${withDate}`;
  formatters[key] ||= new Intl.DateTimeFormat(current === "vi" ? "vi-VN" : "en-GB", {
    timeZone: "Asia/Ho_Chi_Minh",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    ...(withDate ? { day: "2-digit", month: "2-digit" } : {}),
  });
  return formatters[key].format(new Date(iso));
}

// 75 -> "1:15"; 3700 -> "1:01:40"
export function formatDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}
