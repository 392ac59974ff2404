// One work queue (CH-7 in the same place as calls): calls waiting or ringing, call-back items
// (one click rings the agent's own phone, then the citizen; the outcome is recorded with
// `complete`) and chat hand-offs (read, answer, close). Alt+1..9 opens the n-th item.
import { useEffect, useRef, useState } from "preact/hooks";
import { formatDuration, formatTime, t } from "../lib/i18n.js";
import { useNow } from "../lib/app.jsx";
import * as data from "./data.js";

const OUTCOMES = ["answered", "no_answer", "busy", "failed"];

export function WorkQueue({ work, ext, run, reload, onOpenCall, onOpenChat, openChat }) {
  const now = useNow();
  const [closing, setClosing] = useState(null); // call-back id whose outcome is being recorded
  const [outcome, setOutcome] = useState("answered");
  const [note, setNote] = useState("");
  let n = 0;
  const hint = () => {
    n += 1;
    return n <= 9 ? <kbd class="hint">Alt+{n}</kbd> : null;
  };
  const empty = !work.calls.length && !work.callbacks.length && !work.handoffs.length;
  return (
    <section class="panel queue" data-testid="work-queue">
      <h2>{t("console.queue.title")}</h2>
      {empty && <p class="muted" data-testid="queue-empty">{t("console.queue.empty")}</p>}
      <ul class="items">
        {work.calls.map((c) => (
          <li key={`call-${c.id}`} data-testid={`work-call-${c.id}`} class="item">
            <button type="button" class="ghost wide" data-queue-item onClick={() => onOpenCall(c.id)}>
              {hint()} <span class={`badge ${c.status === "ringing" ? "ringing" : "busy"}`}>{t(`console.call_status.${c.status}`)}</span>{" "}
              {c.service} · {c.ani || t("console.queue.withheld")} ·{" "}
              {formatDuration(c.queued_at ? (now - Date.parse(c.queued_at)) / 1000 : c.wait_s)}
            </button>
          </li>
        ))}
        {work.callbacks.map((cb) => (
          <li key={`cb-${cb.id}`} data-testid={`work-callback-${cb.id}`} class="item">
            <button type="button" class="ghost wide" data-queue-item onClick={() => setClosing(cb.id)}>
              {hint()} <span class={`badge ${cb.priority === "urgent" ? "emergency" : "paused"}`}>{t("console.queue.callback")}</span>{" "}
              {cb.service} · {cb.ani} · {t(`console.callback_status.${cb.status}`)} · {formatTime(cb.created_at)}
            </button>
            <div class="row">
              <button type="button" class="ok" data-testid={`callback-dial-${cb.id}`} disabled={!ext}
                onClick={run("dial", async () => {
                  await data.dialCallback(cb.id);
                  setClosing(cb.id);
                  await reload();
                })}>
                {t("console.queue.dial")}
              </button>
            </div>
            {closing === cb.id && (
              <div class="row outcome" data-testid={`callback-outcome-${cb.id}`}>
                <select value={outcome} onChange={(e) => setOutcome(e.currentTarget.value)} data-testid="callback-outcome">
                  {OUTCOMES.map((o) => (
                    <option key={o} value={o}>{t(`console.outcomes.${o}`)}</option>
                  ))}
                </select>
                <input value={note} placeholder={t("console.queue.note")} data-testid="callback-note"
                  onInput={(e) => setNote(e.currentTarget.value)} />
                <button type="button" data-testid="callback-complete"
                  onClick={run("complete", async () => {
                    await data.completeCallback(cb.id, note, outcome);
                    setClosing(null);
                    setNote("");
                    await reload();
                  })}>
                  {t("console.queue.complete")}
                </button>
              </div>
            )}
          </li>
        ))}
        {work.handoffs.map((h) => (
          <li key={`chat-${h.id}`} data-testid={`work-chat-${h.id}`} class={`item ${openChat === h.id ? "open" : ""}`}>
            <button type="button" class="ghost wide" data-queue-item onClick={() => onOpenChat(h.id)}>
              {hint()} <span class={`badge ${h.urgent ? "emergency" : h.status === "waiting" ? "ringing" : "busy"}`}>
                {t("console.queue.chat")}
              </span>{" "}
              {h.channel} · {t(`console.chat_status.${h.status}`)}
              {h.agent ? ` · ${h.agent}` : ""} · {formatTime(h.created_at)}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function ChatPanel({ item, run, reload, onClose }) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const list = useRef(null);
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [item.messages.length]);
  const act = (action, body) =>
    run(action, async () => {
      setBusy(true);
      try {
        await data.handoffAction(item.id, action, body);
        if (action !== "claim") setText("");
        await reload();
        if (action === "close") onClose();
      } finally {
        setBusy(false);
      }
    })();
  const send = (e) => {
    e.preventDefault();
    if (!text.trim() || busy) return;
    act("message", text.trim());
  };
  return (
    <section class="panel chat" data-testid="chat-panel" data-handoff={item.id}>
      <h2>
        {t("console.chat.title", { channel: item.channel })}{" "}
        {item.urgent && <span class="badge emergency">{t("console.chat.urgent")}</span>}
      </h2>
      <p class="muted">
        {item.name ? `${item.name} · ` : ""}{t(`console.chat_status.${item.status}`)}
        {item.agent ? ` · ${item.agent}` : ""}
      </p>
      <div class="messages" ref={list} data-testid="chat-messages">
        {item.messages.map((m, i) => (
          <p key={i} class={`msg ${m.from}`}>
            <span class="muted">{m.from === "agent" ? m.agent || t("console.chat.agent") : t(`console.chat.from_${m.from}`)} · {formatTime(m.at)}</span>
            <br />
            {m.text}
          </p>
        ))}
      </div>
      {item.status === "waiting" && (
        <button type="button" class="ok" data-testid="chat-claim" disabled={busy} onClick={() => act("claim")}>
          {t("console.chat.claim")}
        </button>
      )}
      <form class="row" onSubmit={send}>
        <input data-testid="chat-text" value={text} maxLength={4000}
          placeholder={t("console.chat.placeholder")} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit" data-testid="chat-send" disabled={busy || !text.trim()}>
          {t("console.chat.send")}
        </button>
      </form>
      <p class="row">
        <button type="button" class="ghost" data-testid="chat-close" disabled={busy} onClick={() => act("close", text.trim())}>
          {t("console.chat.close")}
        </button>
        <button type="button" class="ghost" data-testid="chat-back" onClick={onClose}>
          {t("console.chat.back")}
        </button>
      </p>
    </section>
  );
}
