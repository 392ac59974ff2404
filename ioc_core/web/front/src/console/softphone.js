// The browser softphone: JsSIP over Asterisk's WebSocket transport (DTLS-SRTP media), with the
// agent's own credentials from GET /api/v1/softphone (never stored: fetched again per page).
//
// Health is the point (InnovateAsterisk/Browser-Phone#274, #97: phones that say "registered"
// while calls fail, or stay stuck "registering" after a network change): the state shown is
// the transport's and the registrar's, a failed registration is retried with back-off, and a
// dropped WebSocket is reconnected by JsSIP itself (recovery_max_interval) and re-registers.
import JsSIP from "jssip";

export const HEALTH = ["off", "connecting", "registering", "registered", "failed", "unreachable"];

// Re-registration: Asterisk caps Expires (pjsip maximum_expiration); JsSIP re-registers before
// expiry, so keep the expiry short enough to notice a lost registration within a minute.
const REGISTER_EXPIRES = 120;
const RETRY_MS = [1000, 2000, 5000, 10000];

function headerOf(request, name) {
  try {
    return (request && request.getHeader && request.getHeader(name)) || "";
  } catch {
    return "";
  }
}

export class Softphone {
  constructor({ onChange }) {
    this.onChange = onChange; // (snapshot) -> void
    this.ua = null;
    this.config = null;
    this.health = "off";
    this.error = "";
    this.calls = []; // {id, session, direction, number, name, callId, service, status, held, muted, startedAt}
    this.audio = null;
    this.retry = 0;
    this.retryTimer = null;
    this.micError = "";
    this.ring = null;
  }

  snapshot() {
    return {
      health: this.health,
      error: this.error,
      micError: this.micError,
      extension: this.config ? this.config.extension : "",
      calls: this.calls.map(({ session, ...rest }) => rest),
    };
  }

  _emit() {
    this.onChange(this.snapshot());
  }

  _set(health, error = "") {
    this.health = health;
    this.error = error;
    this._emit();
  }

  start(config, { audio, ring }) {
    this.stop();
    this.config = config;
    this.audio = audio;
    this.ring = ring;
    const socket = new JsSIP.WebSocketInterface(config.ws_url);
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: config.uri,
      password: config.password,
      display_name: config.display_name,
      register: true,
      register_expires: REGISTER_EXPIRES,
      session_timers: false,
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 10,
      user_agent: "IOC Hub console",
    });
    const ua = this.ua;
    ua.on("connecting", () => this.health !== "registered" && this._set("connecting"));
    ua.on("connected", () => this._set("registering"));
    ua.on("disconnected", () => this._set("unreachable"));
    ua.on("registered", () => {
      this.retry = 0;
      this._set("registered");
    });
    ua.on("unregistered", () => this.ua === ua && this._set("registering"));
    ua.on("registrationFailed", (e) => {
      this._set("failed", e.cause || "");
      this._retryRegister(ua);
    });
    ua.on("newRTCSession", (e) => this._session(e));
    this._set("connecting");
    ua.start();
  }

  _retryRegister(ua) {
    clearTimeout(this.retryTimer);
    const wait = RETRY_MS[Math.min(this.retry, RETRY_MS.length - 1)];
    this.retry += 1;
    this.retryTimer = setTimeout(() => {
      if (this.ua === ua && ua.isConnected()) ua.register();
    }, wait);
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.ua) {
      const ua = this.ua;
      this.ua = null;
      try {
        ua.stop();
      } catch {
        /* already stopped */
      }
    }
    this.calls = [];
    this.health = "off";
  }

  // Ask for the microphone ahead of the first call (the Ready click): a refusal is said now,
  // not when a caller is already waiting.
  async checkMicrophone() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      stream.getTracks().forEach((t) => t.stop());
      this.micError = "";
    } catch (err) {
      this.micError = err && err.name === "NotAllowedError" ? "denied" : "missing";
    }
    this._emit();
    return !this.micError;
  }

  _session({ session, originator, request }) {
    const id = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const remote = session.remote_identity;
    const item = {
      id,
      session,
      direction: originator === "remote" ? "in" : "out",
      number: (remote && remote.uri && remote.uri.user) || "",
      name: (remote && remote.display_name) || "",
      callId: originator === "remote" ? headerOf(request, "X-IOC-Call") : "",
      service: originator === "remote" ? headerOf(request, "X-IOC-Service") : "",
      status: originator === "remote" ? "ringing" : "dialling",
      held: false,
      muted: false,
      startedAt: Date.now(),
      answeredAt: null,
    };
    this.calls = [...this.calls, item];
    const update = (patch) => {
      Object.assign(item, patch);
      this.calls = [...this.calls];
      this._ringing();
      this._emit();
    };
    session.on("progress", () => item.direction === "out" && update({ status: "ringing-out" }));
    session.on("accepted", () => update({ status: "talking", answeredAt: Date.now() }));
    session.on("confirmed", () => item.status !== "talking" && update({ status: "talking" }));
    session.on("hold", () => update({ held: true }));
    session.on("unhold", () => update({ held: false }));
    session.on("muted", () => update({ muted: true }));
    session.on("unmuted", () => update({ muted: false }));
    const done = (e) => {
      if (e && e.cause === JsSIP.C.causes.USER_DENIED_MEDIA_ACCESS) this.micError = "denied";
      update({ status: "ended", cause: (e && e.cause) || "" });
      this.calls = this.calls.filter((c) => c !== item);
      this._ringing();
      this._emit();
    };
    session.on("ended", done);
    session.on("failed", done);
    session.on("peerconnection", ({ peerconnection }) => this._media(peerconnection));
    if (session.connection) this._media(session.connection);
    this._ringing();
    this._emit();
  }

  _media(pc) {
    pc.addEventListener("track", (ev) => {
      if (this.audio && ev.streams && ev.streams[0]) {
        this.audio.srcObject = ev.streams[0];
        this.audio.play().catch(() => {});
      }
    });
  }

  _ringing() {
    const ringing = this.calls.some((c) => c.status === "ringing" && c.direction === "in");
    if (this.ring) (ringing ? this.ring.start() : this.ring.stop());
  }

  _find(id) {
    return this.calls.find((c) => c.id === id) || null;
  }

  _options() {
    return {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: (this.config && this.config.ice_servers) || [] },
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
    };
  }

  ringingCall() {
    return this.calls.find((c) => c.status === "ringing" && c.direction === "in") || null;
  }

  activeCall() {
    return this.calls.find((c) => c.status === "talking" && !c.held) ||
      this.calls.find((c) => c.status === "talking") ||
      this.calls.find((c) => c.status !== "ringing" || c.direction === "out") ||
      null;
  }

  answer(id) {
    const c = id ? this._find(id) : this.ringingCall();
    if (!c) return false;
    // One conversation at a time: the one being talked to waits on hold.
    for (const other of this.calls) if (other !== c && other.status === "talking" && !other.held) other.session.hold();
    c.session.answer(this._options());
    return true;
  }

  hangUp(id) {
    const c = id ? this._find(id) : this.activeCall() || this.ringingCall();
    if (!c) return false;
    c.session.terminate();
    return true;
  }

  toggleHold(id) {
    const c = id ? this._find(id) : this.activeCall();
    if (!c || c.status !== "talking") return false;
    if (c.session.isOnHold().local) c.session.unhold();
    else c.session.hold();
    return true;
  }

  toggleMute(id) {
    const c = id ? this._find(id) : this.activeCall();
    if (!c || c.status !== "talking") return false;
    if (c.session.isMuted().audio) c.session.unmute({ audio: true });
    else c.session.mute({ audio: true });
    return true;
  }

  dtmf(tone, id) {
    const c = id ? this._find(id) : this.activeCall();
    if (!c || c.status !== "talking") return false;
    c.session.sendDTMF(tone, { transportType: "RFC2833", duration: 120, interToneGap: 70 });
    return true;
  }

  targetUri(number) {
    const host = this.config.uri.split("@")[1];
    return `sip:${number}@${host}`;
  }

  // Blind transfer: REFER the caller to the number; Asterisk's [agents] context places it.
  blindTransfer(number, id) {
    const c = id ? this._find(id) : this.activeCall();
    if (!c || !number) return false;
    c.session.refer(this.targetUri(number));
    return true;
  }

  // Attended transfer, step 1: the caller waits on hold while the agent talks to the target.
  consult(number, id) {
    const c = id ? this._find(id) : this.activeCall();
    if (!c || !number || !this.ua) return null;
    if (!c.session.isOnHold().local) c.session.hold();
    const session = this.ua.call(this.targetUri(number), this._options());
    const consult = this.calls.find((x) => x.session === session);
    if (consult) {
      consult.consultFor = c.id;
      consult.number = number;
    }
    this._emit();
    return consult ? consult.id : null;
  }

  // Step 2: REFER the caller to the consulted party with Replaces: the two are joined and the
  // agent drops out (RFC 5589 attended transfer).
  completeTransfer(consultId) {
    const consult = this._find(consultId);
    const original = consult && this._find(consult.consultFor);
    if (!consult || !original) return false;
    original.session.refer(consult.session.remote_identity.uri.toString(), {
      replaces: consult.session,
    });
    return true;
  }
}

// A ringtone made with Web Audio (no file to fetch). Browsers keep audio muted until the user
// touches the page (InnovateAsterisk/Browser-Phone#614): unlock() runs on the sign-in/Ready
// click, so the first call of the shift rings.
export class Ringtone {
  constructor() {
    this.ctx = null;
    this.timer = null;
    this.playing = false;
  }

  unlock() {
    try {
      this.ctx ||= new (window.AudioContext || window.webkitAudioContext)();
      if (this.ctx.state === "suspended") this.ctx.resume();
    } catch {
      this.ctx = null;
    }
  }

  get locked() {
    return !this.ctx || this.ctx.state !== "running";
  }

  _burst() {
    if (!this.ctx) return;
    const now = this.ctx.currentTime;
    for (const [freq, at] of [[440, 0], [480, 0], [440, 0.6], [480, 0.6]]) {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.08;
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.4);
    }
  }

  start() {
    if (this.playing) return;
    this.playing = true;
    this.unlock();
    this._burst();
    this.timer = setInterval(() => this._burst(), 2000);
  }

  stop() {
    this.playing = false;
    clearInterval(this.timer);
    this.timer = null;
  }
}
