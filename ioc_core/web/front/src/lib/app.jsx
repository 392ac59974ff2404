// What every staff screen shares: the session gate, the header (who, language, sign-out) and
// the connection banner.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { loadSession, loginUrl, signOut, whenSignedOut } from "./api.js";
import { lang, setLang, t, useLang } from "./i18n.js";
import "./style.css";

export function mount(Screen, { roles = null } = {}) {
  document.documentElement.lang = lang();
  render(<Gate Screen={Screen} roles={roles} />, document.getElementById("app"));
}

function Gate({ Screen, roles }) {
  useLang();
  const [session, setSession] = useState(undefined);
  useEffect(() => {
    whenSignedOut(() => location.assign(loginUrl("expired")));
    loadSession().then(
      (s) => (s ? setSession(s) : location.assign(loginUrl())),
      (err) => setSession({ error: err }),
    );
  }, []);
  if (session === undefined) return <p class="muted pad">{t("app.loading")}</p>;
  if (session.error)
    return <p class="banner bad">{t("app.error", { message: session.error.message })}</p>;
  if (roles && !roles.includes(session.user.role))
    return (
      <Frame user={session.user}>
        <p class="banner bad" data-testid="forbidden">{t("app.forbidden")}</p>
      </Frame>
    );
  return <Screen session={session} />;
}

export function Frame({ user, title, status, children, actions }) {
  useLang();
  return (
    <div class="frame">
      <header class="top">
        <strong class="brand">{t("app.name")}</strong>
        <span class="title">{title}</span>
        <span class="spacer" />
        {actions}
        {status && <Status status={status} />}
        {user && (
          <span class="who" data-testid="signed-in-user">
            {t("app.signed_in_as", { name: user.display_name || user.username, role: t(`roles.${user.role}`) })}
          </span>
        )}
        <button
          type="button"
          class="ghost"
          data-testid="lang-switch"
          onClick={() => setLang(lang() === "vi" ? "en" : "vi")}
        >
          {t("app.language")}
        </button>
        {user && (
          <button
            type="button"
            class="ghost"
            data-testid="sign-out"
            onClick={() => signOut().finally(() => location.assign("/login"))}
          >
            {t("app.sign_out")}
          </button>
        )}
      </header>
      {status && status !== "live" && (
        <div class="banner warn" role="alert" data-testid="connection-banner">
          {t(status === "down" ? "app.down" : "app.connecting")}
        </div>
      )}
      <main>{children}</main>
    </div>
  );
}

function Status({ status }) {
  return (
    <span class={`dot ${status === "live" ? "ok" : "warn"}`} data-testid="live-status" data-status={status}>
      {t(status === "live" ? "app.live" : "app.connecting")}
    </span>
  );
}

// A clock that re-renders every second (waiting times, durations).
export function useNow(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}
