// The call-taker's console (/console/): agent state, the browser softphone, the screen pop,
// the draft incident and one work queue (calls, call-backs, chats), driven by the keyboard.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Frame, mount } from "../lib/app.jsx";
import { coalesce, LiveFeed } from "../lib/live.js";
import { t, useLang } from "../lib/i18n.js";
import { AgentPanel } from "./agent.jsx";
import { IncidentForm } from "./incident.jsx";
import { actionOf, isTyping, SHORTCUTS } from "./keys.js";
import { PhonePanel } from "./phone.jsx";
import { ScreenPop } from "./pop.jsx";
import { ChatPanel, WorkQueue } from "./queue.jsx";
import { Ringtone, Softphone } from "./softphone.js";
import * as data from "./data.js";
import "./console.css";
import { loadScreensConfig } from "../lib/map.jsx";

const POLL_MS = 4000; // the live feed makes changes instant; polling covers a feed that is down

function Console({ session }) {
  useLang();
  const user = session.user;
  const ext = user.extension || "";
  const [feed, setFeed] = useState("connecting");
  const [agent, setAgent] = useState(null);
  const [phone, setPhone] = useState({ health: "off", calls: [], micError: "", error: "" });
  const [work, setWork] = useState({ calls: [], callbacks: [], handoffs: [] });
  const [callId, setCallId] = useState(null); // the call on screen (ringing or talking)
  const [callView, setCallView] = useState(null);
  const [chatId, setChatId] = useState(null);
  const [notice, setNotice] = useState("");
  const [config, setConfig] = useState(null);
  const softphone = useRef(null);
  const ring = useRef(new Ringtone());
  const audio = useRef(null);
  const actions = useRef({});

  const loadAgent = useCallback(async () => {
    if (ext) setAgent(await data.myAgent(ext).catch(() => null));
  }, [ext]);
  const loadWork = useCallback(async () => {
    const [calls, callbacks, handoffs] = await Promise.all([
      data.waitingCalls().catch(() => null),
      data.callbacks().catch(() => null),
      data.handoffs().catch(() => null),
    ]);
    setWork((w) => ({
      calls: calls ?? w.calls,
      callbacks: callbacks ?? w.callbacks,
      handoffs: handoffs ?? w.handoffs,
    }));
  }, []);
  const currentId = useRef(null);
  currentId.current = callId;
  const loadCall = useCallback(async () => {
    const id = currentId.current;
    if (!id) return;
    const view = await data.call(id).catch(() => null);
    if (view && currentId.current === id) setCallView(view);
  }, []);

  // The softphone: the agent's own credentials, fetched for this page only.
  useEffect(() => {
    const sp = new Softphone({ onChange: setPhone });
    softphone.current = sp;
    if (!ext) return undefined;
    data.softphoneConfig().then(
      (cfg) => sp.start(cfg, { audio: audio.current, ring: ring.current }),
      (err) => setPhone((p) => ({ ...p, health: "failed", error: err.errorId || err.message })),
    );
    return () => sp.stop();
  }, [ext]);

  // State over REST, kept fresh by the live feed (and by polling while the feed is away).
  useEffect(() => {
    loadScreensConfig().then(setConfig, () => setConfig(null));
    const agentSoon = coalesce(loadAgent, 100);
    const workSoon = coalesce(loadWork, 150);
    const callSoon = coalesce(loadCall, 100);
    const all = () => {
      agentSoon();
      workSoon();
      callSoon();
    };
    const live = new LiveFeed({
      onEvent: (ev) => {
        const type = ev.type || ev.name || "";
        if (type.startsWith("agent.")) agentSoon();
        if (type.startsWith("call.") || type.startsWith("callback.") || type.startsWith("chat.")) workSoon();
        const about = ev.payload && (ev.payload.call_id || ev.payload.call_uid);
        if (type.startsWith("call.") && (!about || about === currentId.current)) callSoon();
      },
      onResync: all,
      onStatus: setFeed,
    }).start();
    all();
    const timer = setInterval(all, POLL_MS);
    return () => {
      live.stop();
      clearInterval(timer);
    };
  }, [loadAgent, loadWork, loadCall]);

  // The call on screen follows the phone: a ringing call pops, the answered one stays.
  const ringing = phone.calls.find((c) => c.direction === "in" && c.status === "ringing");
  const talking = phone.calls.find((c) => c.status === "talking" && !c.consultFor);
  useEffect(() => {
    const shown = ringing || talking;
    if (!shown) return;
    if (shown.callId && shown.callId !== callId) {
      setCallId(shown.callId);
      setCallView(null);
    } else if (!shown.callId && !callId) {
      // No X-IOC-Call header (a call from another agent, a desk test): the ringing call in the
      // store that names this agent, if any.
      const match = work.calls.find((c) => c.ani === shown.number && c.status === "ringing");
      if (match) setCallId(match.id);
    }
  }, [ringing && ringing.id, talking && talking.id, work.calls]);
  useEffect(() => {
    loadCall();
  }, [callId]);

  const run = (name, fn) => async (...args) => {
    setNotice("");
    try {
      return await fn(...args);
    } catch (err) {
      setNotice(t("console.failed", { what: t(`console.actions.${name}`), message: err.message }));
      return null;
    }
  };

  const sp = () => softphone.current;
  actions.current = {
    answer: () => {
      ring.current.unlock();
      if (!sp().answer()) setNotice(t("console.nothing_to_answer"));
    },
    hangUp: () => sp().hangUp(),
    hold: () => sp().toggleHold(),
    mute: () => sp().toggleMute(),
    transfer: () => document.getElementById("transfer-target")?.focus(),
    ready: () => document.querySelector("[data-testid=agent-ready]")?.click(),
    submit: () => document.querySelector("[data-testid=submit-incident]")?.click(),
    search: () => document.getElementById("address-search")?.focus(),
    queueItem: ({ index }) => document.querySelectorAll("[data-queue-item]")[index]?.click(),
  };

  useEffect(() => {
    const onKey = (e) => {
      const hit = actionOf(e, isTyping(e.target));
      if (!hit) return;
      e.preventDefault();
      actions.current[hit.action]?.(hit);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const shownCall = ringing || talking || null;
  const ani = (callView && callView.ani) || (shownCall && shownCall.number) || "";
  const chat = work.handoffs.find((h) => h.id === chatId) || null;

  return (
    <Frame user={user} title={t("screens.console")} status={feed === "live" ? "live" : feed}>
      <audio ref={audio} autoplay data-testid="remote-audio" />
      {!ext && <p class="banner bad" data-testid="no-extension">{t("console.no_extension")}</p>}
      {notice && <p class="banner bad" role="alert" data-testid="console-notice">{notice}</p>}
      <div class="console">
        <div class="col">
          <AgentPanel
            ext={ext}
            agent={agent}
            onChanged={loadAgent}
            run={run}
            unlock={async () => {
              ring.current.unlock();
              await sp().checkMicrophone();
            }}
          />
          <PhonePanel phone={phone} softphone={sp} callView={callView} run={run} />
          <WorkQueue
            work={work}
            ext={ext}
            run={run}
            reload={loadWork}
            onOpenCall={(id) => setCallId(id)}
            onOpenChat={(id) => setChatId(id)}
            openChat={chatId}
          />
        </div>
        <div class="col">
          {chat ? (
            <ChatPanel item={chat} run={run} reload={loadWork} onClose={() => setChatId(null)} />
          ) : (
            <ScreenPop call={callView} phoneCall={shownCall} ani={ani} />
          )}
        </div>
        <div class="col">
          <IncidentForm
            call={callView}
            phoneCall={shownCall}
            config={config}
            run={run}
            onLinked={loadCall}
          />
        </div>
      </div>
      <footer class="shortcuts" data-testid="shortcuts">
        {SHORTCUTS.map((s) => (
          <span key={s.key}>
            <kbd>{s.key}</kbd> {t(`console.actions.${s.action}`)}
          </span>
        ))}
      </footer>
    </Frame>
  );
}

mount(Console, { roles: ["calltaker", "supervisor", "admin"] });
