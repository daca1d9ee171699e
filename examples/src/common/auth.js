// Login and access tokens for the example pages.
//
// /config.json says which mode the server runs in:
//   dev   – tusgate --dev: tokens for any user name from its built-in issuer
//           (POST tokenURL, form username=…[&ttl=…]);
//   auth0 – an OpenID issuer with a browser client ID, via auth0-spa-js
//           (redirect login, refresh tokens kept in localStorage);
//   none  – no authentication.
//
// getToken() hands out an access token that stays valid for a while yet and
// renews it before it expires: a long upload outlives any single token, and
// tus-js-client treats a 401 on its resume HEAD as "upload gone" and starts
// over from byte 0, so a stale token must never reach the server.

export { loadConfig } from "./config.js";

const DEV_USER_KEY = "tusgate.devUser";

// decodeJWT returns the payload of a JWT, or null if it is not one (an opaque
// access token).
export function decodeJWT(token) {
  try {
    const part = token.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

// AuthError is a failure that only a new login can fix.
export class AuthError extends Error {
  constructor(message) {
    super(message);
    this.name = "AuthError";
    this.authRequired = true;
  }
}

export class Auth {
  constructor(cfg, { ttl = "" } = {}) {
    this.cfg = cfg;
    this.mode = cfg.auth.mode;
    this.ttl = ttl; // dev mode: requested token lifetime, e.g. "30s"
    this.user = null;
    this.token = null;
    this.expiresAt = 0; // local clock, ms
    this.lifetime = 0; // ms
    this.stale = false; // the server rejected the current token
    this.refreshing = null;
    this.timer = null;
    this.listeners = [];
    this.client = null; // auth0
  }

  // onLogin registers a callback run after every successful login.
  onLogin(fn) {
    this.listeners.push(fn);
  }

  // Renewal margin: a token is renewed when it has less than this left.
  margin() {
    const third = this.lifetime / 3;
    return Math.max(5000, Math.min(30000, third || 30000));
  }

  // getToken returns a valid access token (null in mode "none"), renewing it
  // first if it is stale or about to expire.
  async getToken() {
    if (this.mode === "none") return null;
    if (this.token && !this.stale && this.expiresAt - Date.now() > this.margin()) {
      return this.token;
    }
    try {
      await this.refresh();
    } catch (err) {
      // Renewal failed (issuer unreachable, say) but the token has a little
      // time left: use it, the next request will try again.
      if (!(err instanceof AuthError) && this.token && !this.stale && this.expiresAt - Date.now() > 1000) {
        return this.token;
      }
      throw err;
    }
    return this.token;
  }

  // invalidate marks the current token as rejected (the server answered 401):
  // the next getToken() fetches a new one.
  invalidate() {
    if (this.mode !== "none") this.stale = true;
  }

  refresh() {
    if (!this.refreshing) {
      this.refreshing = (this.mode === "dev" ? this.refreshDev() : this.refreshAuth0()).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshDev() {
    if (!this.user) throw new AuthError("not logged in");
    const body = new URLSearchParams({ username: this.user });
    if (this.ttl) body.set("ttl", this.ttl);
    const sent = Date.now();
    let res;
    try {
      res = await fetch(this.cfg.auth.tokenURL, { method: "POST", body, cache: "no-store" });
    } catch (err) {
      throw new Error(`token endpoint unreachable: ${err.message}`);
    }
    let data = null;
    try {
      data = await res.json();
    } catch {}
    if (res.status === 400) {
      throw new AuthError(data?.error_description || "the token endpoint rejected the login");
    }
    if (!res.ok || !data?.access_token) {
      throw new Error(`token endpoint answered ${res.status}`);
    }
    const claims = decodeJWT(data.access_token);
    let lifetime = (data.expires_in || 0) * 1000;
    let expiresAt = sent + lifetime;
    if (claims?.exp) {
      // Use the token's own exp, corrected for the difference between the
      // server's clock (iat) and ours.
      const skew = claims.iat ? claims.iat * 1000 - sent : 0;
      if (claims.iat) lifetime = (claims.exp - claims.iat) * 1000;
      expiresAt = claims.exp * 1000 - skew;
    }
    this.setToken(data.access_token, expiresAt, lifetime);
  }

  async refreshAuth0() {
    let token;
    try {
      token = await this.client.getTokenSilently();
      const claims = decodeJWT(token);
      // auth0-spa-js hands out a cached token until shortly before expiry;
      // we want a longer margin, or a new one after a 401.
      if (this.stale || token === this.token || (claims?.exp && claims.exp * 1000 - Date.now() <= this.marginFor(claims))) {
        token = await this.client.getTokenSilently({ cacheMode: "off" });
      }
    } catch (err) {
      const code = err?.error;
      if (code === "login_required" || code === "missing_refresh_token" || code === "invalid_grant" || code === "consent_required") {
        throw new AuthError("session expired, log in again");
      }
      throw err;
    }
    const claims = decodeJWT(token);
    if (!claims) {
      // An opaque token means the audience is missing or wrong.
      console.warn("tusgate: the access token is not a JWT; check the audience in the server's OIDC settings");
    }
    const exp = claims?.exp ? claims.exp * 1000 : Date.now() + 3600e3;
    const lifetime = claims?.exp && claims?.iat ? (claims.exp - claims.iat) * 1000 : 3600e3;
    this.setToken(token, exp, lifetime);
  }

  marginFor(claims) {
    const lifetime = claims.iat ? (claims.exp - claims.iat) * 1000 : 0;
    return Math.max(5000, Math.min(30000, lifetime / 3 || 30000));
  }

  setToken(token, expiresAt, lifetime) {
    this.token = token;
    this.expiresAt = expiresAt;
    this.lifetime = lifetime;
    this.stale = false;
    this.scheduleRefresh();
  }

  // Renew in the background a little before getToken() would, so that
  // requests seldom wait for the issuer.
  scheduleRefresh() {
    clearTimeout(this.timer);
    const due = this.expiresAt - this.margin() - 2000 - Date.now();
    this.timer = setTimeout(() => {
      this.refresh().catch((err) => console.warn("tusgate: background token renewal failed:", err.message));
    }, Math.max(1000, due));
  }

  // init shows the login UI as needed and resolves once logged in.
  async init() {
    document.body.dataset.authMode = this.mode;
    if (this.mode === "none") {
      this.loggedIn("");
      return;
    }
    if (this.mode === "dev") return this.initDev();
    if (this.mode === "auth0") return this.initAuth0();
    throw new Error(`unknown auth mode ${this.mode}`);
  }

  initDev() {
    const section = document.getElementById("login");
    section.innerHTML = `
      <h2>Log in</h2>
      <p class="hint">Development mode: the server issues a token for any user name.</p>
      <form id="login-form" class="login-form">
        <label for="login-username">User name</label>
        <input id="login-username" name="username" autocomplete="username" required maxlength="64"
               pattern="[A-Za-z0-9._@\\|\\-]{1,64}" title="letters, digits and . _ - @ |">
        <button id="login-button" type="submit">Log in</button>
      </form>
      <p id="login-error" class="error" role="alert"></p>`;
    const form = section.querySelector("#login-form");
    const input = section.querySelector("#login-username");
    const error = section.querySelector("#login-error");
    const button = section.querySelector("#login-button");

    return new Promise((resolve) => {
      const attempt = async (name) => {
        error.textContent = "";
        button.disabled = true;
        this.user = name;
        try {
          await this.refresh();
          sessionStorage.setItem(DEV_USER_KEY, name);
          this.loggedIn(name);
          resolve();
        } catch (err) {
          this.user = null;
          error.textContent = `Login failed: ${err.message}`;
          section.hidden = false;
          input.value = name;
          input.focus();
        } finally {
          button.disabled = false;
        }
      };
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const name = input.value.trim();
        if (name) attempt(name);
      });
      const remembered = sessionStorage.getItem(DEV_USER_KEY);
      if (remembered) {
        attempt(remembered);
      } else {
        section.hidden = false;
        input.focus();
      }
    });
  }

  async initAuth0() {
    const a = this.cfg.auth;
    const section = document.getElementById("login");
    const redirectURI = location.origin + location.pathname;
    // Loaded only in this mode: it is most of the page's script.
    const { createAuth0Client } = await import("@auth0/auth0-spa-js");
    this.client = await createAuth0Client({
      domain: a.domain,
      clientId: a.clientId,
      authorizationParams: { audience: a.audience, redirect_uri: redirectURI },
      cacheLocation: "localstorage",
      useRefreshTokens: true,
    });

    const q = new URLSearchParams(location.search);
    if ((q.has("code") || q.has("error")) && q.has("state")) {
      try {
        const { appState } = await this.client.handleRedirectCallback();
        history.replaceState(null, "", location.pathname + (appState?.search || ""));
      } catch (err) {
        history.replaceState(null, "", location.pathname);
        this.showAuth0Login(section, `Login failed: ${err.error_description || err.message}`);
      }
    }

    if (await this.client.isAuthenticated()) {
      try {
        await this.refresh();
        const u = await this.client.getUser();
        this.loggedIn(u?.name || u?.email || u?.sub || "signed in");
        return;
      } catch (err) {
        this.showAuth0Login(section, err instanceof AuthError ? "Session expired, log in again." : `Cannot get a token: ${err.message}`);
      }
    } else {
      this.showAuth0Login(section, "");
    }
    return new Promise(() => {}); // the login button leaves the page
  }

  showAuth0Login(section, message) {
    section.innerHTML = `
      <h2>Log in</h2>
      <p class="hint">Log in with ${escapeHTML(this.cfg.auth.domain)} to upload.</p>
      <button id="login-button" type="button">Log in</button>
      <p id="login-error" class="error" role="alert"></p>`;
    section.querySelector("#login-error").textContent = message;
    section.querySelector("#login-button").addEventListener("click", () => {
      this.client.loginWithRedirect({ appState: { search: location.search } });
    });
    section.hidden = false;
  }

  loggedIn(name) {
    const section = document.getElementById("login");
    if (section) section.hidden = true;
    const user = document.getElementById("user");
    if (user) user.textContent = name;
    const box = document.getElementById("user-box");
    if (box) box.hidden = this.mode === "none";
    const logout = document.getElementById("logout-button");
    if (logout && !logout.dataset.wired) {
      logout.dataset.wired = "1";
      logout.addEventListener("click", () => this.logout());
    }
    const area = document.getElementById("upload-area");
    if (area) area.hidden = false;
    this.userName = name;
    document.body.dataset.authenticated = "true";
    for (const fn of this.listeners) fn(name);
  }

  logout() {
    clearTimeout(this.timer);
    if (this.mode === "dev") {
      sessionStorage.removeItem(DEV_USER_KEY);
      location.reload();
    } else if (this.mode === "auth0") {
      this.client.logout({ logoutParams: { returnTo: location.origin + location.pathname } });
    }
  }
}

export function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
