// The agents grid: state (badge with its word), the call and how long, the pause reason; and
// what a supervisor does about an agent: listen / whisper / barge (their own phone rings,
// then ChanSpy), pause with a reason, unpause.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../lib/api.js";
import { formatDuration, t } from "../lib/i18n.js";
import { PAUSE_REASONS, reasonText } from "../lib/pause.js";

const MONITOR = ["listen", "whisper", "barge"];
const MONITORS = new Set(["supervisor", "admin"]);
const PAUSABLE = new Set(["available", "busy", "ringing", "wrap_up", "unreachable"]);


function since(iso, now) {
  return iso ? (now - Date.parse(iso)) / 1000 : null;
}

function errorText(err) {
  const known = err.errorId && t(`board.errors.${err.errorId}`);
  return known && known !== `board.errors.${err.errorId}` ? known : t("board.errors.other", { message: err.message });
}

function AgentRow({ agent, call, now, canMonitor, canAct, onChanged }) {
  const ext = agent.extension;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [done, setDone] = useState("");
  const [pausing, setPausing] = useState(false);
  const [reason, setReason] = useState(PAUSE_REASONS[0]);
  const picker = useRef(null);
  useEffect(() => {
    if (pausing && picker.current) picker.current.focus(); // keyboard users land in the form
  }, [pausing]);

  const act = async (path, body, doneText) => {
    setBusy(true);
    setError("");
    setDone("");
    try {
      await api("POST", `/api/v1/agents/${encodeURIComponent(ext)}/${path}`, body);
      setDone(doneText);
      setPausing(false);
      onChanged();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const onCall = call && call.status === "connected";
  const out = agent.state === "logged_out";
  const callSeconds = call ? since(call.answered_at || call.queued_at, now) : null;
  return (
    <tr data-testid={`agent-${ext}`} class={out ? "out" : ""}>
      <td>
        <strong>{ext}</strong>
        {agent.name && <div class="muted small">{agent.name}</div>}
      </td>
      <td>
        <span class={`badge ${agent.state}`} data-testid={`agent-${ext}-state`} data-state={agent.state}>
          {t(`board.agent_state.${agent.state}`)}
        </span>
        {!out && (
          <div class="muted small" data-testid={`agent-${ext}-since`}>{formatDuration(since(agent.state_since, now))}</div>
        )}
      </td>
      <td data-testid={`agent-${ext}-call`}>
        {call ? (
          <>
            <span class="badge emergency-svc">{call.service}</span>{" "}
            {call.status === "ringing" ? t("board.agents.ringing") : formatDuration(callSeconds)}
          </>
        ) : (
          <span class="muted">–</span>
        )}
      </td>
      <td data-testid={`agent-${ext}-reason`}>{agent.state === "paused" ? reasonText(agent.pause_reason) : ""}</td>
      <td class="actions">
        {canMonitor &&
          !out &&
          MONITOR.map((mode) => (
            <button
              type="button"
              class="ghost"
              key={mode}
              disabled={busy || !onCall}
              title={onCall ? t(`board.monitor.${mode}_help`) : t("board.monitor.no_call")}
              data-testid={`agent-${ext}-${mode}`}
              onClick={() => act("monitor", { mode }, t("board.monitor.ringing_you"))}
            >
              {t(`board.monitor.${mode}`)}
            </button>
          ))}
        {!canAct ? null : agent.state === "paused" ? (
          <button
            type="button"
            disabled={busy}
            title={t("board.agents.unpause_help")}
            data-testid={`agent-${ext}-unpause`}
            onClick={() => act("unpause", undefined, "")}
          >
            {t("board.agents.unpause")}
          </button>
        ) : pausing ? (
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              act("pause", { reason }, "");
            }}
            onKeyDown={(e) => e.key === "Escape" && setPausing(false)}
          >
            <label class="sr" for={`reason-${ext}`}>{t("board.agents.reason")}</label>
            <select id={`reason-${ext}`} data-testid={`agent-${ext}-pause-reason`} value={reason} onChange={(e) => setReason(e.currentTarget.value)} ref={picker}>
              {PAUSE_REASONS.map((r) => (
                <option value={r} key={r}>{reasonText(r)}</option>
              ))}
            </select>
            <button type="submit" disabled={busy} data-testid={`agent-${ext}-pause-confirm`}>{t("board.agents.pause")}</button>
            <button type="button" class="ghost" onClick={() => setPausing(false)}>{t("board.cancel")}</button>
          </form>
        ) : out ? null : (
          <button
            type="button"
            class="ghost"
            disabled={busy || !PAUSABLE.has(agent.state)}
            data-testid={`agent-${ext}-pause`}
            onClick={() => setPausing(true)}
          >
            {t("board.agents.pause")}
          </button>
        )}
        {error && <div class="error small" role="alert" data-testid={`agent-${ext}-error`}>{error}</div>}
        {done && <div class="muted small" role="status">{done}</div>}
      </td>
    </tr>
  );
}

export function AgentsPanel({ agents, callOf, now, session, onChanged, error }) {
  // The hub lets supervisors and admins (not leaders) monitor, from their own phone.
  const canMonitor = Boolean(session.user.extension) && MONITORS.has(session.user.role);
  // Pausing someone else is a supervisor's (or admin's) act; a leader watches.
  const canAct = MONITORS.has(session.user.role);
  // Signed-out agents last: the wall shows who is working first.
  const out = (a) => (a.state === "logged_out" ? 1 : 0);
  const rows = [...(agents || [])].sort(
    (a, b) => out(a) - out(b) || a.extension.localeCompare(b.extension, "en", { numeric: true }),
  );
  return (
    <section class="panel" data-testid="agents" aria-labelledby="agents-h">
      <h2 id="agents-h">{t("board.agents.title")}</h2>
      {error && <p class="error small">{t("board.unavailable")}</p>}
      {!canMonitor && MONITORS.has(session.user.role) && <p class="muted small" data-testid="monitor-needs-extension">{t("board.monitor.needs_extension")}</p>}
      {rows.length === 0 ? (
        <p class="muted">{t("board.agents.none")}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>{t("board.agents.extension")}</th>
              <th>{t("board.agents.state")}</th>
              <th>{t("board.agents.call")}</th>
              <th title={t("board.agents.reason_long")}>{t("board.agents.reason")}</th>
              <th>{t("board.agents.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <AgentRow key={a.extension} agent={a} call={callOf[a.extension]} now={now} canMonitor={canMonitor} canAct={canAct} onChanged={onChanged} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
