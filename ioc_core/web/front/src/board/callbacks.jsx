// Abandoned calls and other call-backs still owed to citizens, with what a supervisor does:
// claim, retry (back to the automatic dialler), complete with a note, cancel with a note.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../lib/api.js";
import { formatDuration, formatTime, t } from "../lib/i18n.js";
import { THRESHOLDS } from "./figures.js";

const ALLOWED = {
  claim: ["pending", "failed"],
  retry: ["failed", "claimed"],
  complete: ["claimed", "pending", "failed"],
  cancel: ["pending", "claimed", "failed"],
};
const NEEDS_NOTE = new Set(["complete", "cancel"]);

function rank(cb) {
  return THRESHOLDS.emergency_services.includes(cb.service) ? 0 : 1;
}

function CallbackRow({ cb, now, onChanged }) {
  const [note, setNote] = useState("");
  const [asking, setAsking] = useState(null); // "complete" | "cancel" while the note is typed
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const id = `callback-${cb.id}`;
  const noteBox = useRef(null);
  useEffect(() => {
    if (asking && noteBox.current) noteBox.current.focus(); // keyboard users land in the note
  }, [asking]);
  const emergency = rank(cb) === 0;

  const act = async (action) => {
    if (NEEDS_NOTE.has(action) && asking !== action) {
      setAsking(action);
      return;
    }
    if (action === "cancel" && !note.trim()) {
      setError(t("board.callbacks.note_needed"));
      return;
    }
    setBusy(true);
    setError("");
    try {
      await api("POST", `/api/v1/callbacks/${cb.id}/${action}`, NEEDS_NOTE.has(action) ? { note: note.trim() } : {});
      setAsking(null);
      setNote("");
      onChanged();
    } catch (err) {
      setError(err.status === 409 ? t("board.callbacks.conflict") : t("board.errors.other", { message: err.message }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <li class={`cb ${emergency ? "emergency" : ""}`} data-testid={id} data-status={cb.status}>
      <div class="row">
        <span class={`badge ${emergency ? "emergency" : "idle"}`}>{cb.service}</span>
        <strong data-testid={`${id}-number`}>{cb.ani || t("board.callbacks.hidden_number")}</strong>
        <span class="badge status" data-testid={`${id}-status`}>{t(`board.callbacks.status.${cb.status}`)}</span>
        <span class="muted small">
          {t(`board.callbacks.reason.${cb.reason}`)} · {formatTime(cb.created_at)} (
          {formatDuration((now - Date.parse(cb.created_at)) / 1000)}) ·{" "}
          {t("board.callbacks.attempts", { n: cb.attempts, max: cb.max_attempts })}
          {cb.assigned_to ? ` · ${t("board.callbacks.by", { who: cb.assigned_to })}` : ""}
        </span>
      </div>
      <div class="row actions">
        {Object.keys(ALLOWED)
          .filter((a) => ALLOWED[a].includes(cb.status))
          .map((a) => (
            <button
              type="button"
              key={a}
              class={a === "cancel" ? "ghost" : a === "complete" ? "ok" : ""}
              disabled={busy}
              data-testid={`${id}-${a}`}
              onClick={() => act(a)}
            >
              {t(`board.callbacks.${a}`)}
            </button>
          ))}
      </div>
      {asking && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            act(asking);
          }}
          onKeyDown={(e) => e.key === "Escape" && setAsking(null)}
        >
          <label class="sr" for={`${id}-note`}>{t("board.callbacks.note")}</label>
          <input
            id={`${id}-note`}
            data-testid={`${id}-note`}
            maxLength={2000}
            placeholder={t(asking === "cancel" ? "board.callbacks.note_cancel" : "board.callbacks.note_complete")}
            value={note}
            onInput={(e) => setNote(e.currentTarget.value)}
            ref={noteBox}
          />
          <button type="submit" disabled={busy} data-testid={`${id}-confirm`}>
            {t(`board.callbacks.confirm_${asking}`)}
          </button>
          <button type="button" class="ghost" onClick={() => setAsking(null)}>{t("board.cancel")}</button>
        </form>
      )}
      {error && <p class="error small" role="alert" data-testid={`${id}-error`}>{error}</p>}
    </li>
  );
}

export function CallbacksPanel({ callbacks, now, onChanged, error }) {
  const items = [...(callbacks || [])].sort(
    (a, b) => rank(a) - rank(b) || (b.priority || 0) - (a.priority || 0) || a.created_at.localeCompare(b.created_at),
  );
  return (
    <section class="panel" data-testid="callbacks" aria-labelledby="callbacks-h">
      <h2 id="callbacks-h">
        {t("board.callbacks.title")} <span class="count" data-testid="callbacks-count">{items.length}</span>
      </h2>
      {error && <p class="error small">{t("board.unavailable")}</p>}
      {items.length === 0 ? (
        <p class="muted">{t("board.callbacks.none")}</p>
      ) : (
        <ul class="plain">
          {items.map((cb) => (
            <CallbackRow key={cb.id} cb={cb} now={now} onChanged={onChanged} />
          ))}
        </ul>
      )}
    </section>
  );
}
