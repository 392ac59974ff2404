import { render } from "preact";
import { useState } from "preact/hooks";
import { homeOf, safeNext, signIn } from "../lib/api.js";
import { Frame } from "../lib/app.jsx";
import { lang, t, useLang } from "../lib/i18n.js";

function Login() {
  useLang();
  const params = new URLSearchParams(location.search);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(params.get("reason") === "expired" ? t("login.expired") : "");
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const s = await signIn(username.trim(), password);
      location.assign(safeNext(params.get("next"), homeOf(s.user.role)));
    } catch (err) {
      setPassword("");
      if (err.status === 401) setError(t("login.bad_credentials"));
      else if (err.status === 429) setError(t("login.throttled", { seconds: err.retryAfter || 60 }));
      else setError(t("login.failed", { message: err.message }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Frame title={t("screens.login")}>
      <form class="panel login" onSubmit={submit} data-testid="login-form">
        <h1>{t("login.title")}</h1>
        <label for="u">{t("login.username")}</label>
        <input id="u" data-testid="login-username" autocomplete="username" autofocus
          value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />
        <label for="p">{t("login.password")}</label>
        <input id="p" type="password" data-testid="login-password" autocomplete="current-password"
          value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
        {error && <p class="error" role="alert" data-testid="login-error">{error}</p>}
        <p>
          <button type="submit" data-testid="login-submit" disabled={busy}>{t("login.submit")}</button>
        </p>
      </form>
    </Frame>
  );
}

document.documentElement.lang = lang();
render(<Login />, document.getElementById("app"));
