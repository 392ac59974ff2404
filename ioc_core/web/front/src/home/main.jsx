// The front door: every screen, the citizens' chat and the API, for whoever opens the hub.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { loadSession } from "../lib/api.js";
import { Frame } from "../lib/app.jsx";
import { lang, t, useLang } from "../lib/i18n.js";

const LINKS = [
  ["console", "/console/"],
  ["board", "/board/"],
  ["chat", "/chat"],
  ["api", "/api/v1/openapi.json"],
  ["open311", "/open311/v2/services.json"],
  ["health", "/health"],
];

function Home() {
  useLang();
  const [session, setSession] = useState(null);
  useEffect(() => {
    loadSession().then(setSession, () => setSession(null));
  }, []);
  return (
    <Frame title={t("screens.home")} user={session && session.user}>
      <section class="panel home">
        <h1>{t("home.title")}</h1>
        <p>{t("home.lead")}</p>
        <ul>
          {LINKS.map(([key, href]) => (
            <li key={key}>
              <a href={href} data-testid={`link-${key}`}>{t(`home.${key}`)}</a>
            </li>
          ))}
        </ul>
        {!session && (
          <p>
            <a href="/login" data-testid="link-sign-in">{t("home.sign_in")}</a>
            <br />
            <small class="muted">{t("home.first_account")}</small>
          </p>
        )}
      </section>
    </Frame>
  );
}

document.documentElement.lang = lang();
render(<Home />, document.getElementById("app"));
