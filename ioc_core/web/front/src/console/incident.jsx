// The draft incident, prefilled from the call (the switchboard opened it when the call was
// answered: category from the service or the caller's words, priority, ANI, the transcript as
// an internal note). The call-taker completes category, location, description and the
// confidential flag; submitting PATCHes the draft, then `submit` (draft -> new) and `verify`
// (new -> verified). The draft is one incident: a second click, a retry after a network error
// or a reload changes that one incident, never makes another. A report without a call is
// created with an Idempotency-Key kept with the typed text, for the same reason.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { lang, t } from "../lib/i18n.js";
import { useDraft } from "../lib/drafts.js";
import { LocationMap } from "./map.jsx";
import * as data from "./data.js";

const PRIORITIES = ["urgent", "high", "normal", "low"];
const EMPTY = {
  touched: false,
  category: "",
  priority: "",
  title: "",
  description: "",
  address: "",
  area_code: "",
  area_name: "",
  lat: null,
  lon: null,
  confidential: false,
  key: "",
};

function newKey() {
  return (crypto.randomUUID && crypto.randomUUID()) || `k-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

export function IncidentForm({ call, phoneCall, config, onLinked }) {
  const [mode, setMode] = useState(null); // null: follow the call; "new": a report without a call
  const [cats, setCats] = useState([]);
  useEffect(() => {
    data.categories().then(setCats, () => setCats([]));
  }, []);
  const linked = call && call.incident_code;
  // The code stays on screen after the call ended: the form is the draft's, not the call's.
  const code = mode === "new" ? null : linked || null;
  if (!code && mode !== "new")
    return (
      <section class="panel form" data-testid="incident-panel">
        <h2>{t("console.form.title")}</h2>
        <p class="muted" data-testid="incident-waiting">
          {call || phoneCall ? t("console.form.waiting_draft") : t("console.form.no_call")}
        </p>
        <button type="button" class="ghost" data-testid="new-incident" onClick={() => setMode("new")}>
          {t("console.form.new")}
        </button>
      </section>
    );
  const draftKey = code ? `incident.${code}` : "incident.new";
  return (
    <DraftForm key={draftKey} draftKey={draftKey} code={code} mode={mode} setMode={setMode}
      cats={cats} call={call} phoneCall={phoneCall} config={config} onLinked={onLinked} />
  );
}

function DraftForm({ draftKey, code, mode, setMode, cats, call, phoneCall, config, onLinked }) {
  const [form, setForm, clearForm] = useDraft(draftKey, EMPTY);
  const [inc, setInc] = useState(null);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [areaHits, setAreaHits] = useState([]);
  const [dups, setDups] = useState([]);
  const submitting = useRef(false);

  // The staff view of the draft, and its values as the first content of the form.
  useEffect(() => {
    if (!code) {
      setInc(null);
      return;
    }
    setDone(null);
    data.incident(code).then(
      (d) => {
        setInc(d);
        if (d.state !== "draft" && d.state !== "new") setDone(d);
        setForm((f) =>
          f.touched
            ? f
            : {
                ...f,
                category: d.category || "",
                priority: d.priority || "",
                title: d.title || "",
                description: d.description || "",
                address: (d.location && d.location.address) || "",
                area_code: (d.location && d.location.area_code) || "",
                lat: d.location ? d.location.lat : null,
                lon: d.location ? d.location.lon : null,
                confidential: !!(d.reporters && d.reporters[0] && d.reporters[0].confidential),
              },
        );
      },
      (err) => setError(err.message),
    );
  }, [code]);

  const set = (patch) => setForm((f) => ({ ...f, ...patch, touched: true }));
  const cat = cats.find((c) => c.code === form.category);
  const group = (cat && cat.group) || (inc && inc.category_group) || "";

  // Duplicates nearby, before submitting: the core's own rule (group, radius, window).
  useEffect(() => {
    const rule = (config && config.duplicates) || { radius_m: 300, window_min: 120 };
    if (!group || form.lat == null) {
      setDups([]);
      return;
    }
    data
      .nearby({ group, lat: form.lat, lon: form.lon, radiusM: rule.radius_m, windowMin: rule.window_min })
      .then((items) => setDups(items.filter((i) => i.code !== code)), () => setDups([]));
  }, [group, form.lat, form.lon, code]);

  const searchAreas = async (q) => {
    set({ address: q, area_code: "" });
    if (q.trim().length < 2) return setAreaHits([]);
    setAreaHits(await data.areas(q.trim()).catch(() => []));
  };

  const located = form.lat != null || !!form.area_code;
  const canSubmit = !busy && !done && !!form.category && located && (code || mode === "new");

  const fields = () => ({
    category: form.category,
    ...(form.priority ? { priority: form.priority } : {}),
    ...(form.title.trim() ? { title: form.title.trim() } : {}),
    description: form.description,
    location: {
      ...(form.lat != null ? { lat: form.lat, lon: form.lon } : {}),
      address: form.address || form.area_name || "",
      ...(form.area_code ? { area_code: form.area_code } : {}),
    },
  });

  const submit = async (e) => {
    if (e) e.preventDefault();
    if (!canSubmit || submitting.current) return; // Ctrl+Enter twice, a double click
    submitting.current = true;
    setBusy(true);
    setError("");
    try {
      let target = code;
      if (target) {
        const reporter = inc && inc.reporters && inc.reporters[0];
        await data.patchIncident(target, {
          ...fields(),
          ...(reporter ? { reporter: { phone: reporter.phone || "", name: reporter.name || "", confidential: form.confidential } } : {}),
        });
      } else {
        const key = form.key || newKey();
        if (!form.key) setForm((f) => ({ ...f, key }));
        const made = await data.createIncident(
          { ...fields(), channel: "phone", reporter: { confidential: form.confidential } },
          key,
        );
        target = made.code;
      }
      let now = await data.incident(target);
      if (now.state === "draft") now = await data.transition(target, "submit");
      if (now.state === "new") now = await data.transition(target, "verify");
      setDone(now); // the form stays, read-only, until "next": what was sent stays in view
      if (onLinked) onLinked();
    } catch (err) {
      setError(t("console.form.failed", { message: err.message }));
    } finally {
      submitting.current = false;
      setBusy(false);
    }
  };

  const grouped = useMemo(() => {
    const out = {};
    for (const c of cats) (out[c.group] ||= []).push(c);
    return out;
  }, [cats]);
  const nameOf = (c) => (c.name && (c.name[lang()] || c.name.vi)) || c.code;
  const notes = (inc && inc.notes) || [];

  return (
    <form class="panel form" data-testid="incident-form" data-code={code || ""} onSubmit={submit}>
      <h2>
        {t("console.form.title")} {code && <span class="code">{code}</span>}
        {phoneCall == null && call && call.status === "ended" && (
          <span class="muted" data-testid="call-ended-note"> · {t("console.form.call_ended")}</span>
        )}
      </h2>
      {done && (
        <p class="banner ok" role="status" data-testid="incident-done">
          {t("console.form.done")} <strong data-testid="incident-code">{done.code}</strong> ·{" "}
          {(done.state_label && done.state_label[lang()]) || done.state}
          <button type="button" class="ghost" data-testid="next-incident"
            onClick={() => {
              clearForm();
              setDone(null);
              setMode(null);
            }}>
            {t("console.form.next")}
          </button>
        </p>
      )}
      {inc && inc.reporters && inc.reporters[0] && (
        <p class="muted" data-testid="incident-reporter">
          {t("console.form.reporter")}: {inc.reporters[0].phone || inc.reporters[0].name || "–"}
        </p>
      )}
      <fieldset class="plain" disabled={!!done}>
      <label for="f-category">{t("console.form.category")}</label>
      <select id="f-category" data-testid="incident-category" value={form.category}
        onChange={(e) => set({ category: e.currentTarget.value })} required>
        <option value="">{t("console.form.choose")}</option>
        {Object.entries(grouped).map(([g, items]) => (
          <optgroup key={g} label={nameOf(cats.find((c) => c.code === g) || { code: g })}>
            {items.map((c) => (
              <option key={c.code} value={c.code}>{nameOf(c)}</option>
            ))}
          </optgroup>
        ))}
      </select>
      <label for="f-priority">{t("console.form.priority")}</label>
      <select id="f-priority" data-testid="incident-priority" value={form.priority}
        onChange={(e) => set({ priority: e.currentTarget.value })}>
        <option value="">{t("console.form.priority_default")}</option>
        {PRIORITIES.map((p) => (
          <option key={p} value={p}>{t(`console.priorities.${p}`)}</option>
        ))}
      </select>
      <label for="address-search">{t("console.form.location")} <kbd>/</kbd></label>
      <input id="address-search" data-testid="incident-address" value={form.address}
        autocomplete="off" placeholder={t("console.form.address_hint")}
        onInput={(e) => searchAreas(e.currentTarget.value)} />
      {areaHits.length > 0 && (
        <ul class="hits" data-testid="area-hits">
          {areaHits.map((a) => (
            <li key={a.code}>
              <button type="button" class="ghost" data-testid={`area-${a.code}`}
                onClick={() => {
                  set({ area_code: a.code, area_name: a.name, address: a.name }); // then add the street
                  setAreaHits([]);
                }}>
                {a.name} <span class="muted">({a.code})</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      {form.area_code && (
        <p class="muted" data-testid="incident-area">{t("console.form.area")}: {form.area_name || form.area_code}</p>
      )}
      <LocationMap config={config} lat={form.lat} lon={form.lon}
        onPick={(lat, lon) => !done && set({ lat, lon })} />
      {dups.length > 0 && (
        <div class="dups" data-testid="duplicates">
          <strong>{t("console.form.duplicates", { count: dups.length })}</strong>
          <ul>
            {dups.slice(0, 5).map((d) => (
              <li key={d.id} data-testid={`duplicate-${d.code}`}>
                {d.code} · {d.title} · {Math.round(d.distance_m)} m
              </li>
            ))}
          </ul>
        </div>
      )}
      <label for="f-title">{t("console.form.title_field")}</label>
      <input id="f-title" data-testid="incident-title" value={form.title} maxLength={200}
        onInput={(e) => set({ title: e.currentTarget.value })} />
      <label for="f-description">{t("console.form.description")}</label>
      <textarea id="f-description" data-testid="incident-description" rows={4} maxLength={5000}
        value={form.description} onInput={(e) => set({ description: e.currentTarget.value })} />
      {notes.length > 0 && (
        <details class="notes" data-testid="incident-notes" open>
          <summary>{t("console.form.notes")}</summary>
          {notes.map((n) => (
            <pre key={n.id}>{n.body}</pre>
          ))}
        </details>
      )}
      <label class="check">
        <input type="checkbox" data-testid="incident-confidential" checked={form.confidential}
          onChange={(e) => set({ confidential: e.currentTarget.checked })} />
        {t("console.form.confidential")}
      </label>
      </fieldset>
      {error && <p class="error" role="alert" data-testid="incident-error">{error}</p>}
      {!located && !done && <p class="muted">{t("console.form.needs_location")}</p>}
      <p class="row">
        <button type="submit" class="ok" data-testid="submit-incident" disabled={!canSubmit}>
          {busy ? t("console.form.submitting") : t("console.form.submit")} <kbd>Ctrl+Enter</kbd>
        </button>
        {mode === "new" && !done && (
          <button type="button" class="ghost" data-testid="cancel-new" onClick={() => setMode(null)}>
            {t("console.form.back")}
          </button>
        )}
      </p>
    </form>
  );
}
