// The screen pop, while the call rings and after: who calls (number, earlier calls and
// incidents of that number), what they chose in the IVR, what they said (the recorded
// description and its transcript) and the live transcript streaming in.
import { useEffect, useState } from "preact/hooks";
import { formatTime, lang, t } from "../lib/i18n.js";
import { ServiceBadge } from "./phone.jsx";
import * as data from "./data.js";

export function ScreenPop({ call, phoneCall, ani }) {
  const [history, setHistory] = useState({ calls: [], incidents: [], ani: "" });
  useEffect(() => {
    if (!ani || ani === history.ani || !/^\+?[0-9]+$/.test(ani)) return;
    let gone = false;
    Promise.all([
      data.callsOf(ani).catch(() => []),
      data.incidentsOf(ani).catch(() => []),
    ]).then(([calls, incidents]) => !gone && setHistory({ calls, incidents, ani }));
    return () => {
      gone = true;
    };
  }, [ani]);

  if (!call && !phoneCall)
    return (
      <section class="panel pop" data-testid="screen-pop">
        <h2>{t("console.pop.title")}</h2>
        <p class="muted">{t("console.pop.empty")}</p>
      </section>
    );
  const earlier = history.calls.filter((c) => !call || c.id !== call.id);
  const transcripts = (call && call.transcripts) || [];
  const live = call && call.live;
  return (
    <section class="panel pop" data-testid="screen-pop" data-call={call ? call.id : ""}>
      <h2>{t("console.pop.title")}</h2>
      <p class="row">
        <ServiceBadge service={(phoneCall && phoneCall.service) || (call && call.service) || ""} />
        <strong class="number" data-testid="pop-number">{ani}</strong>
        {call && <span class="muted" data-testid="pop-status">{t(`console.call_status.${call.status}`)}</span>}
        {call && call.wait_s > 0 && (
          <span class="muted">{t("console.pop.waited", { seconds: Math.round(call.wait_s) })}</span>
        )}
      </p>
      {call && call.ivr_choices && call.ivr_choices.length > 0 && (
        <p class="ivr" data-testid="ivr-choices">
          <span class="muted">{t("console.pop.ivr")}: </span>
          {call.ivr_choices.map(([menu, digit]) => `${menu} = ${digit}`).join(" · ")}
        </p>
      )}
      <h3>{t("console.pop.transcript")}</h3>
      <div class="transcript" data-testid="transcript" aria-live="polite">
        {transcripts.length === 0 && !live && <p class="muted">{t("console.pop.no_transcript")}</p>}
        {transcripts.map((tr) => (
          <p key={tr.id} data-kind={tr.kind}>
            <span class="muted">{t(`console.transcript_kinds.${tr.kind}`)} · </span>
            {tr.text || (tr.error ? t("console.pop.transcript_failed") : "…")}
          </p>
        ))}
        {live && live.text && (
          <p class="live" data-testid="transcript-live">
            <span class="muted">{t("console.pop.live")} · </span>
            {live.text}
          </p>
        )}
      </div>
      {call && call.status === "ended" && call.recording_path && (
        <audio controls preload="none" src={`/api/v1/calls/${encodeURIComponent(call.id)}/recording`} data-testid="recording" />
      )}
      <h3>{t("console.pop.history", { count: earlier.length })}</h3>
      <ul class="history" data-testid="caller-history">
        {earlier.slice(0, 8).map((c) => (
          <li key={c.id}>
            {formatTime(c.arrived_at, true)} · {c.service} · {t(`console.call_status.${c.status}`)}
            {c.outcome ? ` (${c.outcome})` : ""}
            {c.incident_code ? ` · ${c.incident_code}` : ""}
          </li>
        ))}
      </ul>
      <h3>{t("console.pop.incidents", { count: history.incidents.length })}</h3>
      <ul class="history" data-testid="caller-incidents">
        {history.incidents.slice(0, 8).map((i) => (
          <li key={i.id}>
            <strong>{i.code}</strong> · {i.title} · {(i.state_label && i.state_label[lang()]) || i.state}
          </li>
        ))}
      </ul>
    </section>
  );
}
