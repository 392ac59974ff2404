// The softphone's face: registration health, the ringing call with its service, the call
// controls (answer, hang up, hold, mute), a DTMF keypad, blind and attended transfer, and the
// three-way conference (the switchboard's conference API).
import { useState } from "preact/hooks";
import { formatDuration, t } from "../lib/i18n.js";
import { useNow } from "../lib/app.jsx";
import * as data from "./data.js";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export function serviceOf(phoneCall, callView) {
  return (phoneCall && phoneCall.service) || (callView && callView.service) || "";
}

export function PhonePanel({ phone, softphone, callView, run }) {
  const now = useNow();
  const [target, setTarget] = useState("");
  const [keypad, setKeypad] = useState(false);
  const [confDone, setConfDone] = useState("");
  const ringing = phone.calls.find((c) => c.direction === "in" && c.status === "ringing");
  const main = phone.calls.find((c) => c.status === "talking" && !c.consultFor) ||
    phone.calls.find((c) => !c.consultFor && c.direction === "out");
  const consult = phone.calls.find((c) => c.consultFor);
  const health = phone.health;
  const sp = softphone;

  return (
    <section class="panel phone" data-testid="softphone">
      <h2>{t("console.phone.title")}</h2>
      <p class="row">
        <span class={`dot ${health === "registered" ? "ok" : "warn"}`} data-testid="sip-health" data-health={health}>
          {t(`console.phone.health.${health}`)}
        </span>
      </p>
      {health !== "registered" && health !== "off" && (
        <p class="banner warn" role="alert" data-testid="sip-banner">
          {t(health === "unreachable" ? "console.phone.unreachable" : "console.phone.not_registered", {
            reason: phone.error || "",
          })}
        </p>
      )}
      {phone.micError && (
        <p class="banner bad" role="alert" data-testid="mic-error">
          {t(`console.phone.mic_${phone.micError}`)}
        </p>
      )}
      {ringing && (
        <div class="incoming" data-testid="incoming-call" data-call={ringing.callId}>
          <span class="badge ringing">{t("console.phone.ringing")}</span>
          <ServiceBadge service={serviceOf(ringing, callView)} />
          <strong class="number" data-testid="caller-number">{ringing.number}</strong>
          <div class="row">
            <button type="button" class="ok" data-testid="answer" onClick={() => sp().answer(ringing.id)}>
              {t("console.actions.answer")} <kbd>F3</kbd>
            </button>
            <button type="button" class="danger" data-testid="reject" onClick={() => sp().hangUp(ringing.id)}>
              {t("console.phone.reject")}
            </button>
          </div>
        </div>
      )}
      {main && (
        <div class="current" data-testid="current-call" data-status={main.status}>
          <p class="row">
            <ServiceBadge service={serviceOf(main, callView)} />
            <strong class="number" data-testid="current-number">{main.number}</strong>
            <span class="muted" data-testid="call-duration">
              {main.answeredAt ? formatDuration((now - main.answeredAt) / 1000) : "–"}
            </span>
            {main.held && <span class="badge paused" data-testid="on-hold">{t("console.phone.on_hold")}</span>}
            {main.muted && <span class="badge paused" data-testid="muted">{t("console.phone.muted")}</span>}
          </p>
          <div class="row">
            <button type="button" class="danger" data-testid="hang-up" onClick={() => sp().hangUp(main.id)}>
              {t("console.actions.hangUp")} <kbd>F4</kbd>
            </button>
            <button type="button" class="ghost" data-testid="hold" onClick={() => sp().toggleHold(main.id)}>
              {t(main.held ? "console.phone.resume" : "console.actions.hold")} <kbd>F6</kbd>
            </button>
            <button type="button" class="ghost" data-testid="mute" onClick={() => sp().toggleMute(main.id)}>
              {t(main.muted ? "console.phone.unmute" : "console.actions.mute")} <kbd>F7</kbd>
            </button>
            <button type="button" class="ghost" data-testid="keypad-toggle" aria-expanded={keypad}
              onClick={() => setKeypad(!keypad)}>
              {t("console.phone.keypad")}
            </button>
          </div>
          {keypad && (
            <div class="keypad" data-testid="keypad">
              {KEYS.map((k) => (
                <button type="button" class="ghost" key={k} data-testid={`dtmf-${k}`} onClick={() => sp().dtmf(k, main.id)}>
                  {k}
                </button>
              ))}
            </div>
          )}
          <label for="transfer-target">{t("console.phone.transfer_to")} <kbd>F8</kbd></label>
          <input
            id="transfer-target"
            data-testid="transfer-target"
            inputMode="tel"
            value={target}
            placeholder={t("console.phone.transfer_hint")}
            onInput={(e) => setTarget(e.currentTarget.value.replace(/[^0-9*#]/g, ""))}
          />
          <div class="row">
            <button type="button" class="ghost" data-testid="blind-transfer" disabled={!target}
              onClick={() => sp().blindTransfer(target, main.id)}>
              {t("console.phone.blind")}
            </button>
            {!consult && (
              <button type="button" class="ghost" data-testid="consult" disabled={!target}
                onClick={() => sp().consult(target, main.id)}>
                {t("console.phone.consult")}
              </button>
            )}
            <button type="button" class="ghost" data-testid="conference" disabled={!target || !callView}
              onClick={run("conference", async () => {
                const r = await data.conference(callView.id, target);
                setConfDone(r.room || target);
              })}>
              {t("console.phone.conference")}
            </button>
          </div>
          {confDone && <p class="muted" data-testid="conference-room">{t("console.phone.conference_on", { target })}</p>}
        </div>
      )}
      {consult && (
        <div class="current consult" data-testid="consult-call" data-status={consult.status}>
          <p class="row">
            <span class="badge busy">{t("console.phone.consulting")}</span>
            <strong>{consult.number}</strong>
          </p>
          <div class="row">
            <button type="button" class="ok" data-testid="complete-transfer" disabled={consult.status !== "talking"}
              onClick={() => sp().completeTransfer(consult.id)}>
              {t("console.phone.complete_transfer")}
            </button>
            <button type="button" class="ghost" data-testid="cancel-consult"
              onClick={() => {
                sp().hangUp(consult.id);
                if (main && main.held) sp().toggleHold(main.id);
              }}>
              {t("console.phone.cancel_consult")}
            </button>
          </div>
        </div>
      )}
      {!ringing && !main && health === "registered" && (
        <p class="muted" data-testid="phone-idle">{t("console.phone.idle")}</p>
      )}
    </section>
  );
}

export function ServiceBadge({ service }) {
  if (!service) return null;
  const emergency = ["113", "114", "115"].includes(service);
  return (
    <span class={`badge ${emergency ? "emergency" : "busy"}`} data-testid="call-service" data-service={service}>
      {service} · {t(`console.services.${service}`)}
    </span>
  );
}
