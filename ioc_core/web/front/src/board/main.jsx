// The supervisor board (/board/): live queues, agents, call-backs owed, today's incidents and
// alarms, readable on a wall screen (figures scale with the viewport) and at 1366x768.
import { useEffect, useMemo, useState } from "preact/hooks";
import { Frame, mount, useNow } from "../lib/app.jsx";
import { formatDuration, formatTime, t, useLang } from "../lib/i18n.js";
import { AgentsPanel } from "./agents.jsx";
import * as alarms from "./alarms.js";
import { CallbacksPanel } from "./callbacks.jsx";
import { useBoardData } from "./data.js";
import { THRESHOLDS, callsByAgent, waitingByQueue } from "./figures.js";
import { IncidentsPanel } from "./incidents.jsx";
import { HandoffTile, QueueTile } from "./queues.jsx";
import "./board.css";

const STALE_MS = 20000;

function useAlarms(current, now) {
  const [kept, setKept] = useState(() => alarms.load());
  const [acked, setAcked] = useState(() => alarms.loadAcked());
  const key = current.map((a) => a.id).join(",");
  useEffect(() => {
    setKept((k) => alarms.merge(k, current, Date.now()));
  }, [key]);
  useEffect(() => alarms.save(kept, acked), [kept, acked]);
  const ack = (ids) => setAcked((a) => ({ ...a, ...Object.fromEntries(ids.map((id) => [id, now])) }));
  return { shown: alarms.visible(kept, acked), ack };
}

function alarmText(a) {
  const p = a.params || {};
  if (a.kind === "wait") return t("board.alarms.wait", { queue: t(`board.queue_names.${p.queue}`), limit: p.limit });
  if (a.kind === "callback") return t("board.alarms.callback", { service: p.service, number: p.number });
  return t("board.alarms.incident", { code: p.code, title: p.title || "" });
}

function AlarmsPanel({ shown, ack }) {
  return (
    <section class={`panel alarms ${shown.some((a) => a.active) ? "raised" : ""}`} data-testid="alarms" aria-labelledby="alarms-h" aria-live="polite">
      <h2 id="alarms-h">
        {t("board.alarms.title")} <span class="count" data-testid="alarms-count">{shown.length}</span>
        {shown.length > 1 && (
          <button type="button" class="ghost small-btn" data-testid="alarms-ack-all" onClick={() => ack(shown.map((a) => a.id))}>
            {t("board.alarms.ack_all")}
          </button>
        )}
      </h2>
      {shown.length === 0 ? (
        <p class="muted" data-testid="alarms-none">{t("board.alarms.none")}</p>
      ) : (
        <ul class="plain">
          {shown.map((a) => (
            <li key={a.id} class={`alarm ${a.active ? "active" : "over"}`} data-testid={`alarm-${a.id}`} data-kind={a.kind} data-active={String(a.active)}>
              <span class={`tone ${a.active ? "bad" : "idle"}`}>{t(a.active ? "board.alarms.active" : "board.alarms.over")}</span>{" "}
              <span>{alarmText(a)}</span>
              <span class="muted small"> · {formatTime(new Date(a.raised_at).toISOString())}</span>{" "}
              <button type="button" class="ghost small-btn" data-testid={`alarm-${a.id}-ack`} onClick={() => ack([a.id])}>
                {t("board.alarms.ack")}
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Board({ session }) {
  useLang();
  const now = useNow(1000);
  const { data, errors, status, reload } = useBoardData();
  const body = (name) => data[name] && data[name].body;
  const calls = (body("calls") && body("calls").items) || [];
  const callsAt = (data.calls && data.calls.at) || now;
  const waiting = useMemo(() => waitingByQueue(calls, callsAt), [data.calls]);
  const callOf = useMemo(() => callsByAgent(calls), [data.calls]);
  const callbacks = body("callbacks") && body("callbacks").items;
  const incidents = body("incidents") && body("incidents").items;
  const current = alarms.currentAlarms({ waiting, now, callbacks, incidents });
  const { shown, ack } = useAlarms(current, now);

  const queues = (body("queues") && body("queues").items) || [];
  const order = (q) => {
    const i = THRESHOLDS.queues.indexOf(q.queue);
    return i < 0 ? 99 : i;
  };
  const lastAt = Math.max(0, ...Object.values(data).map((d) => d.at));
  const stale = lastAt && now - lastAt > STALE_MS;
  const switchboardDown = body("queues") && body("queues").switchboard === false;

  const updated = (
    <span class="updated" data-testid="board-updated">
      {lastAt ? t("board.updated", { time: formatTime(new Date(lastAt).toISOString()) }) : t("app.loading")}
    </span>
  );
  return (
    <Frame user={session.user} title={t("screens.board")} status={status} actions={updated}>
      <div class="board">
        {stale ? (
          <p class="banner bad" role="alert" data-testid="stale-banner">
            {t("board.stale", { ago: formatDuration((now - lastAt) / 1000) })}
          </p>
        ) : null}
        {switchboardDown && (
          <p class="banner bad" role="alert" data-testid="switchboard-banner">{t("board.switchboard_down")}</p>
        )}
        <div class="queues" data-testid="queues">
          {queues.length === 0 && <p class="muted">{errors.queues ? t("board.unavailable") : t("app.loading")}</p>}
          {[...queues].sort((a, b) => order(a) - order(b)).map((q) => (
            <QueueTile key={q.queue} q={q} waiting={waiting[q.queue]} now={now} />
          ))}
          <HandoffTile handoffs={body("handoffs")} error={errors.handoffs} />
        </div>
        <p class="muted small definitions">{t("board.queues.definitions")}</p>
        <div class="lower">
          <div class="col">
            <AlarmsPanel shown={shown} ack={ack} />
            <CallbacksPanel callbacks={callbacks} now={now} error={errors.callbacks} onChanged={() => reload.one.callbacks()} />
          </div>
          <AgentsPanel
            agents={body("agents") && body("agents").items}
            callOf={callOf}
            now={now}
            session={session}
            error={errors.agents}
            onChanged={() => {
              reload.one.agents();
              reload.one.queues();
            }}
          />
          <IncidentsPanel incidents={incidents} error={errors.incidents} />
        </div>
      </div>
    </Frame>
  );
}

mount(Board, { roles: ["supervisor", "admin", "leader"] });
