// Agent state: sign in to queues, ready, paused with a reason, wrap-up, sign out — the states
// the switchboard's API and Asterisk's queue members have (telephony AgentState).
import { useEffect, useState } from "preact/hooks";
import { t } from "../lib/i18n.js";
import { PAUSE_REASONS, reasonText } from "../lib/pause.js";
import * as data from "./data.js";

export function AgentPanel({ ext, agent, onChanged, run, unlock }) {
  const [queues, setQueues] = useState([]);
  const [chosen, setChosen] = useState(null);
  const [reason, setReason] = useState(PAUSE_REASONS[0]);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    data.queues().then((items) => setQueues(items.map((q) => q.queue)), () => setQueues([]));
  }, []);
  const state = (agent && agent.state) || "logged_out";
  const selected = chosen || (agent && agent.queues && agent.queues.length ? agent.queues : queues);

  const act = (name, action, body) =>
    run(name, async () => {
      setBusy(true);
      try {
        await data.agentAction(ext, action, body);
        await onChanged();
      } finally {
        setBusy(false);
      }
    })();

  // The Ready click is also the user gesture that lets the ringtone play and asks for the
  // microphone (InnovateAsterisk/Browser-Phone#614; amazon-connect-streams#81).
  const ready = async () => {
    await unlock();
    if (state === "logged_out") await act("login", "login", { queues: selected });
    else if (state === "paused") await act("ready", "unpause", {});
  };

  const toggle = (q) =>
    setChosen(selected.includes(q) ? selected.filter((x) => x !== q) : [...selected, q]);

  return (
    <section class="panel agent" data-testid="agent-panel">
      <h2>{t("console.agent.title", { ext: ext || "–" })}</h2>
      <p class="row">
        <span
          class={`badge ${state}`}
          data-testid="agent-state"
          data-state={state}
        >
          {t(`console.agent.states.${state}`)}
        </span>
        {state === "paused" && agent && agent.pause_reason && (
          <span class="muted" data-testid="pause-reason">
            {reasonText(agent.pause_reason)}
          </span>
        )}
        {state === "wrap_up" && <span class="muted">{t("console.agent.wrap_up_hint")}</span>}
      </p>
      {state === "logged_out" && (
        <fieldset class="queues" data-testid="queue-choice">
          <legend>{t("console.agent.queues")}</legend>
          {queues.map((q) => (
            <label key={q} class="check">
              <input
                type="checkbox"
                checked={selected.includes(q)}
                onChange={() => toggle(q)}
                data-testid={`queue-choice-${q}`}
              />
              {t(`console.queues.${q}`) === `console.queues.${q}` ? q : t(`console.queues.${q}`)}
            </label>
          ))}
        </fieldset>
      )}
      <div class="row">
        {(state === "logged_out" || state === "paused") && (
          <button type="button" class="ok" data-testid="agent-ready" disabled={busy || !ext} onClick={ready}>
            {t(state === "logged_out" ? "console.agent.sign_in" : "console.agent.ready")} <kbd>F9</kbd>
          </button>
        )}
        {state !== "logged_out" && state !== "paused" && (
          <>
            <select
              value={reason}
              onChange={(e) => setReason(e.currentTarget.value)}
              data-testid="pause-reason-choice"
              aria-label={t("console.agent.reason")}
            >
              {PAUSE_REASONS.map((r) => (
                <option key={r} value={r}>{t(`pause_reasons.${r}`)}</option>
              ))}
            </select>
            <button type="button" class="ghost" data-testid="agent-pause" disabled={busy}
              onClick={() => act("pause", "pause", { reason })}>
              {t("console.agent.pause")}
            </button>
          </>
        )}
        {state !== "logged_out" && (
          <button type="button" class="ghost" data-testid="agent-logout" disabled={busy}
            onClick={() => act("logout", "logout", {})}>
            {t("console.agent.sign_out")}
          </button>
        )}
      </div>
    </section>
  );
}
